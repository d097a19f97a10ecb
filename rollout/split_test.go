package rollout_test

import (
	"fmt"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/rollout"
)

func members(n int) []rollout.Member {
	out := make([]rollout.Member, n)
	for k := range out {
		region := "eu"
		if k%4 == 0 {
			region = "us"
		}
		out[k] = rollout.Member{ID: fmt.Sprintf("d%03d", k), Labels: map[string]string{"region": region}}
	}
	return out
}

func sizes(w []rollout.WaveDef) []int {
	var out []int
	for _, x := range w {
		out = append(out, x.Size)
	}
	return out
}

func TestSplitEven(t *testing.T) {
	for _, tt := range []struct {
		n, waves int
		want     string
	}{{10, 3, "[3 3 4]"}, {9, 3, "[3 3 3]"}, {2, 5, "[0 0 0 1 1]"}, {0, 2, "[0 0]"}, {200, 5, "[40 40 40 40 40]"}} {
		assign, waves, err := rollout.Split(members(tt.n), tt.waves, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(sizes(waves)); got != tt.want {
			t.Errorf("Split(%d, %d) sizes = %s, want %s", tt.n, tt.waves, got, tt.want)
		}
		counts := make([]int, len(waves))
		for _, a := range assign {
			counts[a]++
		}
		if fmt.Sprint(counts) != fmt.Sprint(sizes(waves)) {
			t.Errorf("assignment %v disagrees with sizes", counts)
		}
	}
}

func TestSplitGroups(t *testing.T) {
	pct, five := 10.0, 5
	assign, waves, err := rollout.Split(members(100), 0, []flotilla.WaveSpec{
		{Name: "canary", Count: &five},
		{Name: "us", Selector: "region=us"},
		{Name: "ten-percent", Percent: &pct},
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes(waves)) != "[5 23 10 62]" || waves[3].Name != "remaining" {
		t.Fatalf("groups = %+v", waves)
	}
	// The canary took d000-d004, so the us group has the other 23 us devices.
	if assign[0] != 0 || assign[4] != 0 || assign[8] != 1 || assign[5] != 2 {
		t.Fatalf("assign = %v", assign[:10])
	}
	for _, bad := range [][]flotilla.WaveSpec{{{Name: "x"}}, {{Selector: "a in (b"}}, {{Count: &five, Percent: &pct}}} {
		if _, _, err := rollout.Split(members(3), 0, bad); !flotilla.IsCode(err, flotilla.EInvalid) {
			t.Errorf("Split(%+v) = %v, want invalid", bad, err)
		}
	}
}
