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
// (rollout.NeedsInFlight), the scheduled ones of the waves that started
// either way, and those of the next wave only when asked for.
func testRolloutSnapshotInFlight(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := seedKiosks(t, s, 12)
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
		// No wave started: the first plan, without the next wave's
		// devices, says it starts one; the scheduler reads them then.
		snap, err := s.RolloutSnapshot(ctx, r.ID, now, store.SnapshotReads{})
		must(t, err)
		if len(snap.Open) != 0 || !rollout.Compute(snap, now).StartsWave() {
			t.Fatalf("%s: before any wave started the snapshot holds %d devices", tc.id, len(snap.Open))
		}
		snap, err = s.RolloutSnapshot(ctx, r.ID, now, store.SnapshotReads{NextWave: true})
		must(t, err)
		plan := rollout.Compute(snap, now)
		touched, err := s.ApplyRolloutPlan(ctx, r.ID, "me", snap.Rollout.Version, plan.Actions, now)
		must(t, err)
		if len(touched) != 4 {
			t.Fatalf("%s: released %d devices, want wave 1's 4", tc.id, len(touched))
		}
		for _, next := range []bool{false, true} {
			snap, err = s.RolloutSnapshot(ctx, r.ID, now, store.SnapshotReads{NextWave: next})
			must(t, err)
			inFlight, scheduled := 0, map[int]int{}
			for _, d := range snap.Open {
				if d.State == flotilla.StateScheduled {
					scheduled[d.Wave]++
				} else {
					inFlight++
				}
			}
			want, wantNext := 0, 0
			if rollout.NeedsInFlight(snap.Rollout) {
				want = 4
			}
			if next {
				wantNext = 4
			}
			if inFlight != want || scheduled[0] != 0 || scheduled[1] != wantNext || scheduled[2] != 0 {
				t.Fatalf("%s (next wave %v): snapshot holds %d in flight (want %d), scheduled by wave %v (want %d of wave 2)", tc.id, next, inFlight, want, scheduled, wantNext)
			}
		}
		if c := snap.Waves[0].Counts[flotilla.StatePending]; c != 4 {
			t.Fatalf("%s: wave 1 counts %d pending", tc.id, c)
		}
	}
}

// seedKiosks creates tenant acme with n devices labelled app=kiosk (k-00,
// k-01, ...) and a release for them.
func seedKiosks(t *testing.T, s store.Store, n int) *flotilla.Artifact {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	for i := range n {
		must(t, s.CreateDevice(ctx, device("acme", fmt.Sprintf("k-%02d", i), map[string]string{"app": "kiosk"})))
	}
	a := artifact("acme", "fw", "3.0.0", "abc")
	must(t, s.CreateArtifact(ctx, a))
	return a
}
