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
	extraTests["RolloutWavesWrittenLater"] = testRolloutWavesWrittenLater
}

// waveCounts returns each wave's counts and whether it is unwritten.
func waveCounts(t *testing.T, s store.Store, id string) ([]map[flotilla.DeploymentState]int, []bool) {
	t.Helper()
	_, waves, err := s.GetRollout(context.Background(), "acme", id)
	must(t, err)
	var counts []map[flotilla.DeploymentState]int
	var unwritten []bool
	for _, w := range waves {
		counts = append(counts, w.Counts)
		unwritten = append(unwritten, w.Unwritten)
	}
	return counts, unwritten
}

func wantCounts(t *testing.T, what string, got map[flotilla.DeploymentState]int, want map[flotilla.DeploymentState]int) {
	t.Helper()
	for st, n := range want {
		if got[st] != n {
			t.Fatalf("%s: counts %v, want %v", what, got, want)
		}
	}
	for st, n := range got {
		if n != 0 && want[st] == 0 {
			t.Fatalf("%s: counts %v, want %v", what, got, want)
		}
	}
}

// A large rollout writes its first wave at start and the others later;
// what devices, counts and other rollouts see is what they would see had
// every deployment been written at start.
func testRolloutWavesWrittenLater(t *testing.T, s store.Store) {
	ss, ok := s.(*sqlstore.Store)
	if !ok {
		t.Skip("only the SQL stores write waves later")
	}
	ss.WriteWholeUpTo = 5
	ctx := context.Background()
	r, a := seedRollout(t, s, 30, 3)
	sched := flotilla.StateScheduled
	canceled := flotilla.StateCanceled

	_, err := s.StartRollout(ctx, "acme", r.ID, t0.Add(time.Minute))
	must(t, err)
	counts, unwritten := waveCounts(t, s, r.ID)
	if unwritten[0] || !unwritten[1] || !unwritten[2] {
		t.Fatalf("after start, unwritten = %v, want only waves 2 and 3", unwritten)
	}
	for i := range counts {
		wantCounts(t, "after start", counts[i], map[flotilla.DeploymentState]int{sched: 10})
	}
	if ds, err := s.ListDeviceDeployments(ctx, "acme", "dev-015", 10); err != nil || len(ds) != 0 {
		t.Fatalf("dev-015 (wave 2) has deployments %+v, %v before its wave is written", ds, err)
	}
	devs, err := s.ListRolloutDevices(ctx, "acme", r.ID, flotilla.RolloutDeviceFilter{State: sched})
	must(t, err)
	if len(devs) != 30 {
		t.Fatalf("%d scheduled rollout devices, want 30", len(devs))
	}

	// A direct assignment to a member of wave 2 after the start supersedes
	// its rollout deployment when the wave is written.
	direct := newDeployment("acme", "dev-015", a, t0.Add(2*time.Minute))
	_, err = s.CreateDeployment(ctx, direct, assigned(t0.Add(2*time.Minute)))
	must(t, err)
	more, err := s.WriteNextWave(ctx, r.ID, t0.Add(3*time.Minute))
	must(t, err)
	counts, unwritten = waveCounts(t, s, r.ID)
	if !more || unwritten[1] || !unwritten[2] {
		t.Fatalf("after one write, more = %v, unwritten = %v", more, unwritten)
	}
	wantCounts(t, "wave 2 written", counts[1], map[flotilla.DeploymentState]int{sched: 9, canceled: 1})
	ds, err := s.ListDeviceDeployments(ctx, "acme", "dev-015", 10)
	must(t, err)
	if len(ds) != 2 || ds[0].ID != direct.ID || ds[0].State.Terminal() || ds[1].State != canceled || ds[1].RolloutID != r.ID {
		t.Fatalf("dev-015's deployments after its wave was written: %+v", ds)
	}

	// A second rollout over the same devices writes the first one's last
	// wave before superseding it, as if it had always been there.
	r2 := flotilla.Rollout{ID: "r-2", Tenant: "acme", Name: "summer", ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Selector: "app=kiosk", Type: flotilla.TypeForced, Delivery: flotilla.DeliveryPull, WaveCount: 3,
		Policy: flotilla.Policy{MaxInFlight: 100}, Status: flotilla.RolloutCreating, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateRollout(ctx, &r2))
	members, err := s.RolloutMembers(ctx, "acme", "app=kiosk")
	must(t, err)
	var ids []string
	var assign []int
	for i, m := range members {
		ids = append(ids, m.ID)
		assign = append(assign, i/10)
	}
	ws := []flotilla.Wave{{Index: 0, Name: "a", Size: 10}, {Index: 1, Name: "b", Size: 10}, {Index: 2, Name: "c", Size: 10}}
	must(t, s.MaterializeRollout(ctx, r2.ID, ids, assign, ws, t0))
	sup, err := s.StartRollout(ctx, "acme", r2.ID, t0.Add(4*time.Minute))
	must(t, err)
	if len(sup) != 1+29 { // the direct assignment and r-1's 29 open members
		t.Fatalf("r-2's start superseded %d deployments, want 30", len(sup))
	}
	counts, unwritten = waveCounts(t, s, r.ID)
	if unwritten[2] {
		t.Fatal("r-1's last wave is still unwritten after r-2 started")
	}
	wantCounts(t, "r-1 wave 3 after r-2 started", counts[2], map[flotilla.DeploymentState]int{canceled: 10})
	if more, err := s.WriteNextWave(ctx, r.ID, t0.Add(5*time.Minute)); err != nil || more {
		t.Fatalf("WriteNextWave of a written rollout = %v, %v", more, err)
	}

	// Starting a wave writes it if the scheduler did not get to it.
	snap, err := s.RolloutSnapshot(ctx, r2.ID, t0.Add(5*time.Minute), store.SnapshotReads{NextWave: true})
	must(t, err)
	w1 := 1
	_, err = s.ApplyRolloutPlan(ctx, r2.ID, "", snap.Rollout.Version, []rollout.Action{{Kind: rollout.ActStartWave, Wave: &w1}}, t0.Add(5*time.Minute))
	must(t, err)
	counts, unwritten = waveCounts(t, s, r2.ID)
	if unwritten[1] || !unwritten[2] {
		t.Fatalf("after wave 2 started, unwritten = %v", unwritten)
	}
	wantCounts(t, "r-2 wave 2 started", counts[1], map[flotilla.DeploymentState]int{sched: 10})

	// Aborted, an unwritten wave's members count as canceled and stay
	// without deployments.
	if _, _, err := operate(t, s, r2.ID, rollout.OpAbort, t0.Add(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	counts, _ = waveCounts(t, s, r2.ID)
	wantCounts(t, "r-2 wave 3 aborted", counts[2], map[flotilla.DeploymentState]int{canceled: 10})
	devs, err = s.ListRolloutDevices(ctx, "acme", r2.ID, flotilla.RolloutDeviceFilter{State: canceled})
	must(t, err)
	if len(devs) != 30 {
		t.Fatalf("%d canceled devices of the aborted r-2, want 30", len(devs))
	}
	if more, err := s.WriteNextWave(ctx, r2.ID, t0.Add(7*time.Minute)); err != nil || more {
		t.Fatalf("WriteNextWave of an aborted rollout = %v, %v", more, err)
	}
	if ds, err := s.ListDeviceDeployments(ctx, "acme", "dev-025", 10); err != nil || len(ds) != 1 || ds[0].RolloutID != r.ID {
		t.Fatalf("dev-025's deployments: %+v, %v (want only r-1's)", ds, err)
	}
}
