package sqlstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/rollout"
)

func TestMergeRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, nruns := range []int{0, 1, 2, 3, 4, 5, 7, 180} {
		for _, empty := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d runs, empty ones %v", nruns, empty), func(t *testing.T) {
				var runs [][]rollout.Member
				var all []rollout.Member
				for r := range nruns {
					n := rng.IntN(50)
					if empty && r%2 == 0 {
						n = 0
					}
					var run []rollout.Member
					for range n {
						run = append(run, rollout.Member{ID: fmt.Sprintf("d%05d", rng.IntN(100_000)), Labels: map[string]string{"run": fmt.Sprint(r)}})
					}
					slices.SortFunc(run, func(a, b rollout.Member) int { return strings.Compare(a.ID, b.ID) })
					runs = append(runs, run)
					all = append(all, run...)
				}
				got := mergeRuns(runs)
				if len(got) != len(all) {
					t.Fatalf("merged %d members, want %d", len(got), len(all))
				}
				if !slices.IsSortedFunc(got, func(a, b rollout.Member) int { return strings.Compare(a.ID, b.ID) }) {
					t.Fatalf("not sorted: %v", got)
				}
				count := func(ms []rollout.Member) map[string]int {
					c := map[string]int{}
					for _, m := range ms {
						c[m.ID+"/"+m.Labels["run"]]++
					}
					return c
				}
				if fmt.Sprint(count(got)) != fmt.Sprint(count(all)) {
					t.Fatalf("members lost or changed their labels")
				}
			})
		}
	}
}
