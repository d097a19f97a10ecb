package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/fakestore"
	"github.com/flotilla-ota/flotilla/internal/scheduler"
	"github.com/flotilla-ota/flotilla/rollout"
)

// These tests drive the scheduler over the in-memory fake store: no
// database, a frozen clock, each well under a second.

var unitNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func unitScheduler(t *testing.T) (*scheduler.Scheduler, *fakestore.Store, *core.Core) {
	t.Helper()
	st := fakestore.New()
	c := core.New(st, nil, nil, nil, core.Config{})
	c.Now = func() time.Time { return unitNow }
	return scheduler.New(c, st, scheduler.Config{Owner: "me"}), st, c
}

// twoWaves is a running rollout of two waves of two devices, none released.
func twoWaves(status flotilla.RolloutStatus) *rollout.Snapshot {
	s := &rollout.Snapshot{Rollout: flotilla.Rollout{ID: "r1", Tenant: "acme", Status: status, StartedAt: &unitNow, Version: 7}}
	for w := 0; w < 2; w++ {
		s.Waves = append(s.Waves, flotilla.Wave{Index: w, Size: 2, Status: flotilla.WaveScheduled, Counts: map[flotilla.DeploymentState]int{flotilla.StateScheduled: 2}})
		for k := 0; k < 2; k++ {
			s.Open = append(s.Open, rollout.Deployment{ID: int64(w*2 + k + 1), DeviceID: fmt.Sprintf("d%d%d", w, k), Wave: w, State: flotilla.StateScheduled, Attempt: 1})
		}
	}
	return s
}

func kinds(acts []rollout.Action) []rollout.ActionKind {
	var out []rollout.ActionKind
	for _, a := range acts {
		out = append(out, a.Kind)
	}
	return out
}

func TestProcessAppliesThePlanUnderTheLease(t *testing.T) {
	s, st, _ := unitScheduler(t)
	st.Snapshots["r1"] = twoWaves(flotilla.RolloutRunning)
	if err := s.Process(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if len(st.Applied) != 1 {
		t.Fatalf("%d plans applied, want 1 (the next look finds nothing to do)", len(st.Applied))
	}
	a := st.Applied[0]
	if a.Owner != "me" || a.Version != 7 || fmt.Sprint(kinds(a.Actions)) != "[start_wave release]" {
		t.Fatalf("applied %+v", a)
	}
	if got := a.Actions[1].IDs; fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("released %v, want wave 1's devices", got)
	}
	// The devices of a wave that has not started are read only for the
	// plan that starts it.
	if got := fmt.Sprintf("%+v", st.SnapshotReads); got != "[{Failed:false NextWave:false} {Failed:false NextWave:true} {Failed:false NextWave:false}]" {
		t.Fatalf("snapshots read %s: want one without the next wave, one with it for the plan that starts it, and one without for the next look", got)
	}
}

func TestProcessPlansAgainAfterAConflict(t *testing.T) {
	s, st, _ := unitScheduler(t)
	st.Snapshots["r1"] = twoWaves(flotilla.RolloutRunning)
	st.Conflicts = 2
	if err := s.Process(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if len(st.Applied) != 1 || st.Applied[0].Version != 9 {
		t.Fatalf("applied %+v: want one plan, at the version after two conflicting writes", st.Applied)
	}
}

func TestProcessReleasesAFinishedRollout(t *testing.T) {
	s, st, _ := unitScheduler(t)
	st.Snapshots["r1"] = twoWaves(flotilla.RolloutCompleted)
	if err := s.Process(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if len(st.Applied) != 0 || fmt.Sprint(st.Released) != "[r1]" {
		t.Fatalf("applied %v, released %v", st.Applied, st.Released)
	}
}

func TestPausedRolloutReleasesNothing(t *testing.T) {
	s, st, _ := unitScheduler(t)
	st.Snapshots["r1"] = twoWaves(flotilla.RolloutPaused)
	if err := s.Process(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if len(st.Applied) != 0 {
		t.Fatalf("a paused rollout got %+v", st.Applied)
	}
}

func TestProcessWritesUnwrittenWavesOneByOne(t *testing.T) {
	s, st, _ := unitScheduler(t)
	snap := twoWaves(flotilla.RolloutRunning)
	snap.Waves = append(snap.Waves, flotilla.Wave{Index: 2, Size: 2, Status: flotilla.WaveScheduled})
	snap.Waves[1].Unwritten, snap.Waves[2].Unwritten = true, true
	st.Snapshots["r1"] = snap
	if err := s.Process(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if !snap.Waves[2].Unwritten || snap.Waves[1].Unwritten {
		t.Fatalf("after one look: wave 2 unwritten %v, wave 3 unwritten %v; want wave 2 written, wave 3 not yet",
			snap.Waves[1].Unwritten, snap.Waves[2].Unwritten)
	}
	if err := s.Process(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if snap.Waves[2].Unwritten {
		t.Fatal("wave 3 still unwritten after the second look")
	}
}

func TestCycleCancelsDeploymentsOfALapsedWindow(t *testing.T) {
	s, st, c := unitScheduler(t)
	st.AddDevice(flotilla.Device{Tenant: "acme", ID: "dev-1"})
	a := flotilla.Artifact{Tenant: "acme", Name: "fw", Version: "1.0.0"}
	st.AddArtifact(&a)
	d, err := c.AssignDeployment(context.Background(), admin(), core.AssignRequest{Tenant: "acme", DeviceID: "dev-1", ArtifactName: "fw", ArtifactVersion: "1.0.0",
		Window: &flotilla.MaintenanceWindow{Schedule: "0 0 12 1 1 ? 2027", Duration: "01:00:00", Timezone: "UTC"}})
	if err != nil {
		t.Fatal(err)
	}
	s.Cycle(context.Background())
	if got, _ := st.GetDeployment(context.Background(), "acme", d.ID); got.State != flotilla.StatePending {
		t.Fatalf("before the window lapsed: %s", got.State)
	}
	unitNow = unitNow.AddDate(1, 0, 0) // 2027-06: the one window has passed
	defer func() { unitNow = unitNow.AddDate(-1, 0, 0) }()
	s.Cycle(context.Background())
	if got, _ := st.GetDeployment(context.Background(), "acme", d.ID); got.State != flotilla.StateCanceled {
		t.Fatalf("after the window lapsed: %s", got.State)
	}
}

func admin() core.Principal {
	return core.Principal{Token: flotilla.Token{Tenant: flotilla.DefaultTenant, Scopes: []flotilla.Scope{flotilla.ScopeAdmin}}}
}
