package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

func init() {
	extraTests["Rollouts"] = testRollouts
	extraTests["RolloutLeases"] = testRolloutLeases
	extraTests["PoliciesAndChannels"] = testPoliciesAndChannels
}

// seedRollout creates tenant acme, n devices and a materialized rollout
// over them in the given number of waves.
func seedRollout(t *testing.T, s store.Store, n, waves int) (flotilla.Rollout, *flotilla.Artifact) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	a := artifact("acme", "fw", "3.0.0", "abc")
	must(t, s.CreateArtifact(ctx, a))
	var ids []string
	var assign []int
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("dev-%03d", i)
		d := device("acme", id, map[string]string{"app": "kiosk"})
		seen := t0
		d.LastSeenAt = &seen
		must(t, s.CreateDevice(ctx, d))
		ids = append(ids, id)
		assign = append(assign, i*waves/n)
	}
	r := flotilla.Rollout{ID: "r-1", Tenant: "acme", Name: "spring", ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Selector: "app=kiosk", Type: flotilla.TypeForced, Delivery: flotilla.DeliveryPull, WaveCount: waves,
		Policy: flotilla.Policy{MaxInFlight: 100}, Status: flotilla.RolloutCreating, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateRollout(ctx, &r))
	var ws []flotilla.Wave
	for w := 0; w < waves; w++ {
		size := 0
		for _, x := range assign {
			if x == w {
				size++
			}
		}
		ws = append(ws, flotilla.Wave{Index: w, Name: fmt.Sprintf("wave-%d", w+1), Size: size})
	}
	members, err := s.RolloutMembers(ctx, "acme", "app=kiosk")
	must(t, err)
	if len(members) != n {
		t.Fatalf("RolloutMembers = %d, want %d", len(members), n)
	}
	must(t, s.MaterializeRollout(ctx, r.ID, ids, assign, ws, t0))
	return r, a
}

func testRollouts(t *testing.T, s store.Store) {
	ctx := context.Background()
	r, a := seedRollout(t, s, 20, 2)
	got, waves, err := s.GetRollout(ctx, "acme", r.ID)
	must(t, err)
	if got.Status != flotilla.RolloutReady || got.Total != 20 || len(waves) != 2 || waves[0].Counts[flotilla.StateScheduled] != 10 || got.Policy.MaxInFlight != 100 {
		t.Fatalf("ready rollout = %+v, waves %+v", got, waves)
	}
	_, _, err = s.GetRollout(ctx, "beta", r.ID)
	wantCode(t, err, flotilla.ENotFound)
	wantCode(t, s.MaterializeRollout(ctx, r.ID, nil, nil, nil, t0), flotilla.EConflict)

	// hawkBit's integer ids: given once, stable, per tenant.
	num, err := s.RolloutNumber(ctx, "acme", r.ID)
	must(t, err)
	if again, _ := s.RolloutNumber(ctx, "acme", r.ID); again != num || num <= 0 {
		t.Fatalf("rollout number %d then %d", num, again)
	}
	if id, err := s.RolloutByNumber(ctx, "acme", num); err != nil || id != r.ID {
		t.Fatalf("RolloutByNumber = %q, %v", id, err)
	}
	_, err = s.RolloutByNumber(ctx, "beta", num)
	wantCode(t, err, flotilla.ENotFound)
	_, err = s.RolloutNumber(ctx, "beta", r.ID)
	wantCode(t, err, flotilla.ENotFound)
	must(t, s.SetRolloutFilter(ctx, "acme", r.ID, "controllerId==dev*", "spring"))
	if f, d, err := s.RolloutFilter(ctx, "acme", r.ID); err != nil || f != "controllerId==dev*" || d != "spring" {
		t.Fatalf("RolloutFilter = %q %q %v", f, d, err)
	}
	if f, _, _ := s.RolloutFilter(ctx, "beta", r.ID); f != "" {
		t.Fatal("another tenant reads the filter")
	}

	// A direct assignment on dev-000 is superseded when the rollout starts.
	direct := newDeployment("acme", "dev-000", a, t0)
	_, err = s.CreateDeployment(ctx, direct, assigned(t0))
	must(t, err)
	sup, err := s.StartRollout(ctx, "acme", r.ID, t0.Add(time.Minute))
	must(t, err)
	if len(sup) != 1 || sup[0].ID != direct.ID || sup[0].State != flotilla.StateCanceled {
		t.Fatalf("superseded = %+v", sup)
	}
	_, err = s.StartRollout(ctx, "acme", r.ID, t0)
	wantCode(t, err, flotilla.EConflict)

	// The planner's view: everything scheduled; wave 0 may start.
	claimed, err := s.ClaimRollouts(ctx, "me", t0, t0.Add(time.Minute), 10)
	must(t, err)
	if len(claimed) != 1 {
		t.Fatalf("claimed %v", claimed)
	}
	now := t0.Add(2 * time.Minute)
	snap, err := s.RolloutSnapshot(ctx, r.ID, now, store.SnapshotReads{NextWave: true})
	must(t, err)
	if snap.Rollout.Status != flotilla.RolloutRunning || len(snap.Open) != 10 || snap.Waves[0].Counts[flotilla.StateScheduled] != 10 { // only the next wave is loaded
		t.Fatalf("snapshot: status %s, %d open, counts %v", snap.Rollout.Status, len(snap.Open), snap.Waves[0].Counts)
	}
	plan := rollout.Compute(snap, now)
	touched, err := s.ApplyRolloutPlan(ctx, r.ID, "me", snap.Rollout.Version, plan.Actions, now)
	must(t, err)
	if len(touched) != 10 {
		t.Fatalf("released %d devices, want the 10 of wave 1", len(touched))
	}
	// A stale version is refused.
	_, err = s.ApplyRolloutPlan(ctx, r.ID, "me", snap.Rollout.Version, plan.Actions, now)
	wantCode(t, err, flotilla.EConflict)
	// So is another owner.
	_, err = s.ApplyRolloutPlan(ctx, r.ID, "other", snap.Rollout.Version+1, nil, now)
	wantCode(t, err, flotilla.EConflict)

	_, waves, _ = s.GetRollout(ctx, "acme", r.ID)
	if waves[0].Status != flotilla.WaveRunning || waves[0].Counts[flotilla.StatePending] != 10 || waves[1].Counts[flotilla.StateScheduled] != 10 {
		t.Fatalf("waves after release = %+v", waves)
	}
	devs, err := s.ListRolloutDevices(ctx, "acme", r.ID, flotilla.RolloutDeviceFilter{State: flotilla.StatePending, Limit: 5})
	must(t, err)
	if len(devs) != 5 || devs[0].DeviceID != "dev-000" || devs[0].DeploymentID == 0 {
		t.Fatalf("rollout devices = %+v", devs)
	}

	// Devices report: 8 succeed, 2 fail.
	for i, dv := range touched {
		state := flotilla.StateSucceeded
		if i >= 8 {
			state = flotilla.StateFailed
		}
		_, err := s.UpdateDeployment(ctx, "acme", dv.DeviceID, dv.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
			d.State, d.UpdatedAt = state, now
			return flotilla.Change{Deployment: d}, nil
		})
		must(t, err)
	}
	// Retry re-runs the two failures as new attempts.
	ro, retried, err := operate(t, s, r.ID, rollout.OpRetry, now)
	must(t, err)
	if len(retried) != 2 || ro.Status != flotilla.RolloutRunning {
		t.Fatalf("retry touched %d, status %s", len(retried), ro.Status)
	}
	_, waves, _ = s.GetRollout(ctx, "acme", r.ID)
	if waves[0].Counts[flotilla.StateFailed] != 0 || waves[0].Counts[flotilla.StateScheduled] != 2 || waves[0].Counts[flotilla.StateSucceeded] != 8 {
		t.Fatalf("counts after retry = %v", waves[0].Counts)
	}
	list, _ := s.ListDeviceDeployments(ctx, "acme", touched[9].DeviceID, 10)
	if len(list) != 2 || list[0].Attempt != 2 || list[0].State != flotilla.StateScheduled {
		t.Fatalf("retried device has %+v", list)
	}

	// Pause, resume, next wave, abort.
	_, _, err = operate(t, s, r.ID, rollout.OpResume, now)
	wantCode(t, err, flotilla.EConflict)
	ro, _, err = operate(t, s, r.ID, rollout.OpPause, now)
	must(t, err)
	if ro.Status != flotilla.RolloutPaused {
		t.Fatalf("pause = %s", ro.Status)
	}
	ro, _, err = operate(t, s, r.ID, rollout.OpResume, now)
	must(t, err)
	_, waves, _ = s.GetRollout(ctx, "acme", r.ID)
	if ro.Status != flotilla.RolloutRunning || !waves[0].ErrorAck {
		t.Fatalf("resume = %s, wave ack %v", ro.Status, waves[0].ErrorAck)
	}
	_, _, err = operate(t, s, r.ID, rollout.OpNextWave, now)
	must(t, err)
	_, _, err = operate(t, s, r.ID, rollout.OpNextWave, now)
	wantCode(t, err, flotilla.EConflict)
	ro, canceled, err := operate(t, s, r.ID, rollout.OpAbort, now)
	must(t, err)
	if ro.Status != flotilla.RolloutAborted || len(canceled) != 12 {
		t.Fatalf("abort: %s, canceled %d (want 10 of wave 2 and 2 retries)", ro.Status, len(canceled))
	}
	wantCode(t, s.DeleteRollout(ctx, "beta", r.ID), flotilla.ENotFound)
	runs, err := s.ListRolloutRuns(ctx, "acme", r.ID)
	must(t, err)
	if len(runs) < 3 {
		t.Fatalf("runs = %+v", runs)
	}
	for _, run := range runs {
		if run.EndedAt == nil {
			t.Fatalf("run %+v still open after abort", run)
		}
	}
	must(t, s.DeleteRollout(ctx, "acme", r.ID))
}

// operate applies an operator's action the way the core does: a snapshot,
// rollout.Operate, and ApplyRolloutPlan without a lease.
func operate(t *testing.T, s store.Store, id string, op rollout.Op, now time.Time) (flotilla.Rollout, []store.Touched, error) {
	t.Helper()
	ctx := context.Background()
	snap, err := s.RolloutSnapshot(ctx, id, now, store.SnapshotReads{Failed: op == rollout.OpRetry, NextWave: true})
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	actions, err := rollout.Operate(snap, op, now)
	if err != nil {
		return snap.Rollout, nil, err
	}
	touched, err := s.ApplyRolloutPlan(ctx, id, "", snap.Rollout.Version, actions, now)
	if err != nil {
		return snap.Rollout, nil, err
	}
	r, _, err := s.GetRollout(ctx, "", id)
	return r, touched, err
}

func testRolloutLeases(t *testing.T, s store.Store) {
	ctx := context.Background()
	r, _ := seedRollout(t, s, 4, 1)
	_, err := s.StartRollout(ctx, "acme", r.ID, t0)
	must(t, err)
	// Many owners race for the lease: exactly one gets it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ids, err := s.ClaimRollouts(ctx, fmt.Sprintf("owner-%d", i), t0, t0.Add(time.Minute), 10)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			winners += len(ids)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d owners got the lease", winners)
	}
	// After expiry another owner takes over.
	ids, err := s.ClaimRollouts(ctx, "late", t0.Add(2*time.Minute), t0.Add(3*time.Minute), 10)
	must(t, err)
	if len(ids) != 1 {
		t.Fatalf("expired lease not taken over: %v", ids)
	}
	must(t, s.ReleaseRollout(ctx, r.ID, "late"))
	ids, _ = s.ClaimRollouts(ctx, "next", t0.Add(2*time.Minute), t0.Add(3*time.Minute), 10)
	if len(ids) != 1 {
		t.Fatal("released lease not claimable")
	}
}

func testPoliciesAndChannels(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	th := 95.0
	created, err := s.PutPolicy(ctx, flotilla.NamedPolicy{Tenant: "acme", Name: "careful", Policy: flotilla.Policy{SuccessThreshold: &th, Retries: 2}, CreatedAt: t0, UpdatedAt: t0})
	must(t, err)
	if !created {
		t.Fatal("first PutPolicy did not create")
	}
	created, err = s.PutPolicy(ctx, flotilla.NamedPolicy{Tenant: "acme", Name: "careful", Policy: flotilla.Policy{Retries: 3}, CreatedAt: t0, UpdatedAt: t0.Add(time.Hour)})
	must(t, err)
	p, err := s.GetPolicy(ctx, "acme", "careful")
	must(t, err)
	if created || p.Policy.Retries != 3 || !p.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("replaced policy = %+v (created %v)", p, created)
	}
	list, _ := s.ListPolicies(ctx, "acme")
	if len(list) != 1 {
		t.Fatalf("policies = %+v", list)
	}
	must(t, s.DeletePolicy(ctx, "acme", "careful"))
	wantCode(t, s.DeletePolicy(ctx, "acme", "careful"), flotilla.ENotFound)

	a := artifact("acme", "fw", "1.0.0", "x")
	must(t, s.CreateArtifact(ctx, a))
	created, err = s.PutChannel(ctx, flotilla.Channel{Tenant: "acme", Name: "stable", ArtifactID: a.ID, ArtifactName: "fw", ArtifactVersion: "1.0.0",
		Selector: "channel=stable", Waves: 3, RolloutID: "r-9", CreatedAt: t0, UpdatedAt: t0})
	must(t, err)
	c, err := s.GetChannel(ctx, "acme", "stable")
	must(t, err)
	if !created || c.ArtifactVersion != "1.0.0" || c.Waves != 3 || c.RolloutID != "r-9" {
		t.Fatalf("channel = %+v", c)
	}
	chs, _ := s.ListChannels(ctx, "acme")
	if len(chs) != 1 {
		t.Fatal("channels not listed")
	}
	must(t, s.DeleteChannel(ctx, "acme", "stable"))
	_, err = s.GetChannel(ctx, "acme", "stable")
	wantCode(t, err, flotilla.ENotFound)
}
