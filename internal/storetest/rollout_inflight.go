package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

func init() {
	extraTests["RolloutSnapshotInFlight"] = testRolloutSnapshotInFlight
}

// testRolloutSnapshotInFlight: a running rollout's snapshot holds its
// in-flight deployments only when the plan looks at them
// (rollout.NeedsInFlight), and the scheduled ones of the waves that may
// release either way.
func testRolloutSnapshotInFlight(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	for i := range 12 {
		must(t, s.CreateDevice(ctx, device("acme", fmt.Sprintf("k-%02d", i), map[string]string{"app": "kiosk"})))
	}
	a := artifact("acme", "fw", "3.0.0", "abc")
	must(t, s.CreateArtifact(ctx, a))
	for _, tc := range []struct {
		id     string
		policy flotilla.Policy
	}{{"r-plain", flotilla.Policy{}}, {"r-timeout", flotilla.Policy{DeviceTimeout: flotilla.Duration(time.Hour)}}} {
		r := evenRollout(t, s, tc.id, "app=kiosk", 3, a, tc.policy)
		_, err := s.StartRollout(ctx, "acme", r.ID, t0)
		must(t, err)
		_, err = s.ClaimRollouts(ctx, "me", t0, t0.Add(time.Minute), 10)
		must(t, err)
		now := t0.Add(time.Second)
		snap, err := s.RolloutSnapshot(ctx, r.ID, now, false)
		must(t, err)
		plan := rollout.Compute(snap, now)
		touched, err := s.ApplyRolloutPlan(ctx, r.ID, "me", snap.Rollout.Version, plan.Actions, now)
		must(t, err)
		if len(touched) != 4 {
			t.Fatalf("%s: released %d devices, want wave 1's 4", tc.id, len(touched))
		}
		snap, err = s.RolloutSnapshot(ctx, r.ID, now, false)
		must(t, err)
		inFlight, scheduled := 0, map[int]int{}
		for _, d := range snap.Open {
			if d.State == flotilla.StateScheduled {
				scheduled[d.Wave]++
			} else {
				inFlight++
			}
		}
		want := 0
		if rollout.NeedsInFlight(snap.Rollout) {
			want = 4
		}
		if inFlight != want || scheduled[0] != 0 || scheduled[1] != 4 || scheduled[2] != 0 {
			t.Fatalf("%s: snapshot holds %d in flight (want %d), scheduled by wave %v (want wave 2's 4)", tc.id, inFlight, want, scheduled)
		}
		if c := snap.Waves[0].Counts[flotilla.StatePending]; c != 4 {
			t.Fatalf("%s: wave 1 counts %d pending", tc.id, c)
		}
	}
}
