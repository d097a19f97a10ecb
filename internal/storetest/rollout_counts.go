package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/sqlstore"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

func init() {
	extraTests["RolloutCountsForDisplay"] = testRolloutCountsForDisplay
}

// A large rollout's counts, read for display, may be reused for a while;
// the scheduler's snapshot always counts, and display reuses what it
// counted; a change of the rollout's or a wave's status reads them again.
func testRolloutCountsForDisplay(t *testing.T, s store.Store) {
	ss, ok := s.(*sqlstore.Store)
	if !ok {
		t.Skip("only the SQL stores cache counts")
	}
	ctx := context.Background()
	r, a := seedRollout(t, s, 6, 2)
	_, err := s.StartRollout(ctx, "acme", r.ID, t0.Add(time.Minute))
	must(t, err)
	sched, canceled := flotilla.StateScheduled, flotilla.StateCanceled
	// A direct assignment supersedes the member's rollout deployment.
	supersede := func(device string, at time.Duration) {
		t.Helper()
		_, err := s.CreateDeployment(ctx, newDeployment("acme", device, a, t0.Add(at)), assigned(t0.Add(at)))
		must(t, err)
	}

	ss.CountsCacheFrom, ss.CountsMaxAge = 1, time.Hour
	counts, _ := waveCounts(t, s, r.ID)
	wantCounts(t, "after start", counts[0], map[flotilla.DeploymentState]int{sched: 3})
	supersede("dev-000", 2*time.Minute)
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "read again within the hour", counts[0], map[flotilla.DeploymentState]int{sched: 3})
	snap, err := s.RolloutSnapshot(ctx, r.ID, t0.Add(3*time.Minute), store.SnapshotReads{})
	must(t, err)
	wantCounts(t, "the scheduler's snapshot", snap.Waves[0].Counts, map[flotilla.DeploymentState]int{sched: 2, canceled: 1})
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "the snapshot's counts, kept for display", counts[0], map[flotilla.DeploymentState]int{sched: 2, canceled: 1})

	ss.CountsMaxAge = time.Nanosecond
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "older than the maximum age", counts[0], map[flotilla.DeploymentState]int{sched: 2, canceled: 1})

	ss.CountsMaxAge = time.Hour
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "cached again", counts[0], map[flotilla.DeploymentState]int{sched: 2, canceled: 1})
	counts[0][sched] = 99 // a caller's map is its own
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "after a caller changed its copy", counts[0], map[flotilla.DeploymentState]int{sched: 2, canceled: 1})
	supersede("dev-001", 4*time.Minute)
	_, _, err = operate(t, s, r.ID, rollout.OpPause, t0.Add(5*time.Minute))
	must(t, err)
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "after a pause", counts[0], map[flotilla.DeploymentState]int{sched: 1, canceled: 2})

	ss.CountsCacheFrom = 7 // more devices than the rollout has
	supersede("dev-002", 6*time.Minute)
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "a small rollout", counts[0], map[flotilla.DeploymentState]int{canceled: 3})

	ss.CountsCacheFrom, ss.CountsMaxAge = 1, -1
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "wave 2", counts[1], map[flotilla.DeploymentState]int{sched: 3})
	supersede("dev-003", 7*time.Minute)
	counts, _ = waveCounts(t, s, r.ID)
	wantCounts(t, "never reused", counts[1], map[flotilla.DeploymentState]int{sched: 2, canceled: 1})
}
