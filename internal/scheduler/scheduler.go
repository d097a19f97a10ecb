// Package scheduler moves rollouts forward. Each cycle it leases the
// rollouts that need attention, loads a snapshot of each, asks the pure
// planner (package rollout) what to do, and applies that plan in one
// transaction guarded by the lease and the rollout's version — so several
// server replicas can run schedulers on one database, a rollout is worked
// on by one of them at a time, and a crashed replica's rollouts are taken
// over when its lease expires.
//
// Device feedback wakes the scheduler for the affected rollout at once
// (debounced), so waves advance promptly, not only on the tick.
package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

// Config tunes the scheduler.
type Config struct {
	// Owner names this replica in leases; it must be unique per process.
	Owner string
	// Tick is how often every leased rollout is looked at (default 1s).
	Tick time.Duration
	// Lease is how long a claim lasts without renewal (default 15s).
	Lease time.Duration
	// Debounce coalesces wakeups (default 50ms).
	Debounce time.Duration
	// StaleCreate is how old a rollout stuck in "creating" must be before
	// the scheduler takes its snapshot (default 30s).
	StaleCreate time.Duration
}

// Store is what the scheduler reads and writes of rollouts; deployment
// changes outside a plan go through the core.
type Store interface {
	ClaimRollouts(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error)
	ReleaseRollout(ctx context.Context, id, owner string) error
	RolloutSnapshot(ctx context.Context, id string, now time.Time, read store.SnapshotReads) (rollout.Snapshot, error)
	ApplyRolloutPlan(ctx context.Context, id, owner string, version int64, actions []rollout.Action, now time.Time) ([]store.Touched, error)
	WriteNextWave(ctx context.Context, id string, now time.Time) (bool, error)
	GetRollout(ctx context.Context, tenant, id string) (flotilla.Rollout, []flotilla.Wave, error)
	OpenWindowedDeployments(ctx context.Context) ([]flotilla.Deployment, error)
}

// Scheduler is one replica's rollout driver.
type Scheduler struct {
	core *core.Core
	st   Store
	log  *slog.Logger
	cfg  Config

	mu      sync.Mutex
	pending map[string]bool
	wake    chan struct{}
	// due is when each rollout next needs a look without being woken: its
	// plan's next time-based event, or a heartbeat. A running rollout of
	// 100k devices then costs nothing between events.
	due map[string]time.Time
}

// heartbeat is how many ticks a rollout with no time-based event waits
// between looks that nothing asked for.
const heartbeat = 5

// New returns a scheduler. Wire its Wake and DeploymentChanged to the
// core's hooks so that it hears of changes as they happen.
func New(c *core.Core, st Store, cfg Config) *Scheduler {
	if cfg.Owner == "" {
		cfg.Owner = core.NewID("sched-")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 50 * time.Millisecond
	}
	if cfg.StaleCreate <= 0 {
		cfg.StaleCreate = 30 * time.Second
	}
	return &Scheduler{core: c, st: st, log: c.Log.With("scheduler", cfg.Owner), cfg: cfg, pending: map[string]bool{}, wake: make(chan struct{}, 1), due: map[string]time.Time{}}
}

// DeploymentChanged is the scheduler's reaction to a deployment change: a
// rollout device that finished may open a gate.
func (s *Scheduler) DeploymentChanged(d flotilla.Deployment) {
	if d.RolloutID != "" && d.State.Terminal() {
		s.Wake(d.RolloutID)
	}
}

// Owner is this scheduler's lease name.
func (s *Scheduler) Owner() string { return s.cfg.Owner }

// Wake asks for a rollout to be planned soon.
func (s *Scheduler) Wake(id string) {
	s.mu.Lock()
	s.pending[id] = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run drives rollouts until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	// Wakeups wait at least the debounce, and four times what the last
	// woken cycle took: a rollout whose snapshot is expensive (tens of
	// thousands of devices finishing) is looked at a few times a second,
	// not after every device, so planning takes at most a fifth of a core.
	var last time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.Cycle(ctx)
		case <-s.wake:
			wait := max(s.cfg.Debounce, min(4*last, time.Second))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			s.mu.Lock()
			ids := s.pending
			s.pending = map[string]bool{}
			s.mu.Unlock()
			start := time.Now()
			s.cycleFor(ctx, ids)
			last = time.Since(start)
		}
	}
}

// Cycle claims and processes every rollout that needs attention, and
// sweeps lapsed maintenance windows of direct assignments.
func (s *Scheduler) Cycle(ctx context.Context) {
	s.cycleFor(ctx, nil)
	if err := s.sweepLapsedWindows(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("sweep lapsed windows", "err", err)
	}
}

// cycleFor processes the claimed rollouts, all of them or only those in
// only.
func (s *Scheduler) cycleFor(ctx context.Context, only map[string]bool) {
	// Leases are wall-clock time shared by replicas, not policy time.
	wall := time.Now()
	ids, err := s.st.ClaimRollouts(ctx, s.cfg.Owner, wall, wall.Add(s.cfg.Lease), 200)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("claim rollouts", "err", err)
		}
		return
	}
	now := s.core.Now()
	for _, id := range ids {
		if only != nil && !only[id] {
			continue
		}
		if only == nil {
			s.mu.Lock()
			due, ok := s.due[id]
			s.mu.Unlock()
			if ok && now.Before(due) {
				continue
			}
		}
		if err := s.Process(ctx, id); err != nil && ctx.Err() == nil {
			s.log.Warn("process rollout", "rollout", id, "err", err)
		}
	}
}

// Process plans and applies one rollout this scheduler has leased, until
// the plan comes back empty.
func (s *Scheduler) Process(ctx context.Context, id string) error {
	for round := 0; round < 10; round++ {
		now := s.core.Now()
		snap, err := s.st.RolloutSnapshot(ctx, id, now, store.SnapshotReads{})
		if err != nil {
			return err
		}
		r := snap.Rollout
		if r.Status == flotilla.RolloutCreating {
			if now.Sub(r.UpdatedAt) > s.cfg.StaleCreate {
				return s.core.MaterializeRollout(ctx, id)
			}
			return nil
		}
		if r.Status.Finished() || r.Status == flotilla.RolloutReady || r.Status == flotilla.RolloutDraft {
			s.mu.Lock()
			delete(s.due, id)
			s.mu.Unlock()
			return s.st.ReleaseRollout(ctx, id, s.cfg.Owner)
		}
		plan := rollout.Compute(snap, now)
		if plan.StartsWave() {
			// Plan again with the devices of the wave it starts.
			if snap, err = s.st.RolloutSnapshot(ctx, id, now, store.SnapshotReads{NextWave: true}); err != nil {
				return err
			}
			r, plan = snap.Rollout, rollout.Compute(snap, now)
		}
		due := now.Add(heartbeat * s.cfg.Tick)
		if !plan.Next.IsZero() {
			s.wakeAt(id, plan.Next.Sub(now))
			if plan.Next.Before(due) {
				due = plan.Next
			}
		}
		s.mu.Lock()
		s.due[id] = due
		s.mu.Unlock()
		if len(plan.Actions) == 0 {
			return s.writeAhead(ctx, id, snap.Waves, now)
		}
		began := time.Now()
		touched, err := s.st.ApplyRolloutPlan(ctx, id, s.cfg.Owner, r.Version, plan.Actions, now)
		if flotilla.IsCode(err, flotilla.EConflict) {
			continue // someone changed it; plan again
		}
		if err != nil {
			return err
		}
		s.announce(ctx, r, plan, touched, began)
	}
	return nil
}

// writeAhead writes the next unwritten wave of a large rollout, one per
// look, so that its deployments exist before the wave starts.
func (s *Scheduler) writeAhead(ctx context.Context, id string, waves []flotilla.Wave, now time.Time) error {
	if !slices.ContainsFunc(waves, func(w flotilla.Wave) bool { return w.Unwritten }) {
		return nil
	}
	more, err := s.st.WriteNextWave(ctx, id, now)
	if err != nil {
		return fmt.Errorf("write the next wave of rollout %s: %w", id, err)
	}
	if more {
		s.wakeAt(id, s.cfg.Debounce)
	}
	return nil
}

// announce tells devices' caches and watchers what a plan changed.
func (s *Scheduler) announce(ctx context.Context, before flotilla.Rollout, plan rollout.Plan, touched []store.Touched, began time.Time) {
	after, _, err := s.st.GetRollout(ctx, before.Tenant, before.ID)
	if err != nil {
		after = before
	}
	for _, a := range plan.Actions {
		switch a.Kind {
		case rollout.ActStartWave:
			s.core.PublishWave(after, *a.Wave, flotilla.WaveRunning, "")
		case rollout.ActFinishWave:
			s.core.PublishWave(after, *a.Wave, a.WaveStatus, a.Reason)
		case rollout.ActSetStatus:
			s.log.Info("rollout status", "rollout", before.ID, "status", a.Status, "reason", a.Reason)
			if a.Status == flotilla.RolloutCompleted {
				s.core.SweepChannel(after)
			}
		}
	}
	s.core.AfterRolloutChange(after, touched, began)
}

// wakeAt wakes the rollout after d (policy time and wall time advance
// together in production).
func (s *Scheduler) wakeAt(id string, d time.Duration) {
	if d > s.cfg.Tick {
		return // the tick will come sooner
	}
	time.AfterFunc(max(d, time.Millisecond), func() { s.Wake(id) })
}

// sweepLapsedWindows cancels direct assignments whose maintenance schedule
// has no window left (rollouts do this in their plan).
func (s *Scheduler) sweepLapsedWindows(ctx context.Context) error {
	list, err := s.st.OpenWindowedDeployments(ctx)
	if err != nil {
		return err
	}
	now := s.core.Now()
	for _, d := range list {
		if !core.WindowLapsed(d, now) {
			continue
		}
		if _, err := s.core.RequestCancel(ctx, core.RefOf(d), "the maintenance schedule has no window left"); err != nil && !flotilla.IsCode(err, flotilla.EConflict) {
			s.log.Warn("cancel for a lapsed window", "deployment", d.ID, "err", err)
		}
	}
	return nil
}
