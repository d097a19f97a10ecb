package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

func init() {
	extraTests["SelectorsFollowLabelChanges"] = testSelectorsFollowLabelChanges
	extraTests["MembersInByteOrder"] = testMembersInByteOrder
}

// testSelectorsFollowLabelChanges: counts and rollout members found through
// the label-set index agree with deciding the selector on every device,
// through single and bulk inserts, relabeling (to a set no other device
// has, back to a shared one), deletes, and another tenant with the same
// sets.
func testSelectorsFollowLabelChanges(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	var batch []flotilla.Device
	for i := 0; i < 300; i++ {
		batch = append(batch, device("acme", fmt.Sprintf("d%03d", i), map[string]string{"region": fmt.Sprintf("r%d", i%10), "model": fmt.Sprintf("m%d", i%3)}))
	}
	must(t, s.CreateDevices(ctx, batch))
	must(t, s.CreateDevice(ctx, device("acme", "solo", map[string]string{"region": "r1", "canary": "yes"})))
	must(t, s.CreateDevice(ctx, device("acme", "bare", map[string]string{})))
	must(t, s.CreateDevice(ctx, device("other", "d001", map[string]string{"region": "r1", "model": "m1"})))
	relabel := func(id string, labels map[string]string) {
		t.Helper()
		_, err := s.UpdateDevice(ctx, "acme", id, flotilla.DevicePatch{Labels: &labels}, t0)
		must(t, err)
	}
	relabel("d005", map[string]string{"region": "r1", "model": "m9", "only": "me"})
	relabel("d006", map[string]string{"region": "r1", "model": "m1"})
	relabel("d007", map[string]string{"region": "r7", "model": "m1", "only": "me"})
	relabel("d007", map[string]string{"region": "r2", "model": "m2"}) // its set of a moment ago is carried by nobody now
	// A device's own upload relabels it in one write, to a set not seen before.
	_, _, err := s.EditDevice(ctx, "acme", "d008", t0, func(d flotilla.Device, _ bool) (*flotilla.DevicePatch, error) {
		labels := map[string]string{"region": d.Labels["region"], "model": "m1", "fresh": "set"}
		return &flotilla.DevicePatch{Labels: &labels}, nil
	})
	must(t, err)
	must(t, s.DeleteDevice(ctx, "acme", "d011"))
	must(t, s.DeleteDevice(ctx, "acme", "d021"))

	all, err := s.ListDevices(ctx, "acme", store.DeviceQuery{})
	must(t, err)
	for _, sel := range []string{"region=r1", "region in (r1,r2),model!=m1", "only", "!only", "only=me", "canary=yes", "region", "!region", "model=m0",
		"region notin (r1)", "region=r7", "nothing=here", "fresh=set", "region=r8,model=m1", ""} {
		parsed := label.MustParse(sel)
		var want []string
		for _, d := range all {
			if parsed.Matches(d.Labels) {
				want = append(want, d.ID)
			}
		}
		n, err := s.CountDevices(ctx, "acme", parsed)
		must(t, err)
		if n != len(want) {
			t.Errorf("CountDevices(%q) = %d, want %d", sel, n, len(want))
		}
		members, err := s.RolloutMembers(ctx, "acme", sel)
		must(t, err)
		var got []string
		for _, m := range members {
			got = append(got, m.ID)
			var d flotilla.Device
			for _, x := range all {
				if x.ID == m.ID {
					d = x
				}
			}
			if fmt.Sprint(m.Labels) != fmt.Sprint(d.Labels) {
				t.Errorf("RolloutMembers(%q): %s has labels %v, want %v", sel, m.ID, m.Labels, d.Labels)
			}
		}
		if !slices.IsSorted(got) {
			t.Errorf("RolloutMembers(%q) not in id order: %v", sel, got)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("RolloutMembers(%q) = %v, want %v", sel, got, want)
		}
	}
}

// testMembersInByteOrder: rollout members come in byte order of their ids
// (as Go compares them, whatever the database's collation), ids the core
// would refuse included: one with a line break must not be split.
func testMembersInByteOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	ids := []string{"b-2", "Zed", "apple", "line\nbreak", "Mid", "a.1", "B-1", "_x", "10", "9"}
	for i, id := range ids {
		must(t, s.CreateDevice(ctx, device("acme", id, map[string]string{"app": "pos", "side": fmt.Sprint(i % 3)})))
	}
	must(t, s.CreateDevice(ctx, device("acme", "other", map[string]string{"app": "kiosk"})))
	members, err := s.RolloutMembers(ctx, "acme", "app=pos")
	must(t, err)
	var got []string
	for _, m := range members {
		got = append(got, m.ID)
	}
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		t.Errorf("RolloutMembers(app=pos) = %q, want %q", got, want)
	}
}
