package rollout

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/maintenance"
)

// Deployment is one device's current attempt in a rollout, as the planner
// sees it.
type Deployment struct {
	ID        int64                    `json:"id"`
	DeviceID  string                   `json:"device_id"`
	Wave      int                      `json:"wave"`
	State     flotilla.DeploymentState `json:"state"`
	Attempt   int                      `json:"attempt"`
	StartedAt *time.Time               `json:"started_at,omitempty"` // released at
	LastSeen  *time.Time               `json:"last_seen,omitempty"`  // the device's
}

// Snapshot is everything Plan needs about one rollout.
type Snapshot struct {
	Rollout flotilla.Rollout `json:"rollout"`
	Waves   []flotilla.Wave  `json:"waves"`
	// Open are the latest attempts that are scheduled or in flight. A
	// store may leave the in-flight ones out when NeedsInFlight says the
	// plan does not look at them.
	Open []Deployment `json:"open"`
	// Retryable are latest attempts that failed or timed out and have
	// retries left under the policy.
	Retryable []Deployment `json:"retryable,omitempty"`
	// ReleasedAt are release times within the last minute, for the rate.
	ReleasedAt []time.Time `json:"released_at,omitempty"`
	// Successes counts the rollout's successes so far.
	Successes int `json:"successes"`
	// Failed are the latest attempts that failed, timed out, were rejected
	// or skipped: what an operator's retry re-runs. Loaded only for it.
	Failed []Deployment `json:"failed,omitempty"`
}

// NeedsInFlight reports whether Compute looks at r's in-flight
// deployments (pending … installing): to time them out (device_timeout),
// to count them against max_in_flight, or to cancel them when the
// maintenance schedule lapses. Otherwise the waves' counts say all it
// needs, and a running wave's snapshot need not read its devices again
// after every change (a 33k-device wave, several times a second).
func NeedsInFlight(r flotilla.Rollout) bool {
	return r.Policy.DeviceTimeout > 0 || r.Policy.MaxInFlight > 0 || r.Window != nil
}

// ScheduledThrough is the last wave whose scheduled devices a snapshot
// holds: every wave that started and, with next, the first that has not
// (-1: none). Compute releases only those; the next wave's are needed
// only by the plan that starts it (Plan.StartsWave).
func ScheduledThrough(waves []flotilla.Wave, next bool) int {
	last := -1
	for _, w := range waves {
		if w.Status == flotilla.WaveRunning || w.Status == flotilla.WaveSucceeded || w.Status == flotilla.WaveFailed {
			last = w.Index
		}
	}
	if next {
		last++
	}
	return last
}

// ActionKind names what an action does.
type ActionKind string

// The actions.
const (
	ActTimeOut     ActionKind = "time_out"     // in-flight deployments → timed_out (flotilla.MoveTimeOut)
	ActCancel      ActionKind = "cancel"       // cancel IDs, or every open deployment when IDs is empty (flotilla.CancelOutcome)
	ActRetry       ActionKind = "retry"        // new scheduled attempts for failed devices
	ActStartWave   ActionKind = "start_wave"   // wave → running, and a run of it starts
	ActSuccessGate ActionKind = "success_gate" // record that a wave met its success threshold
	ActRelease     ActionKind = "release"      // scheduled → pending (flotilla.MoveRelease)
	ActSkip        ActionKind = "skip"         // scheduled → skipped, offline (flotilla.MoveSkip)
	ActFinishWave  ActionKind = "finish_wave"  // wave → succeeded | failed; its open run ends
	ActAbortWaves  ActionKind = "abort_waves"  // every scheduled or running wave → aborted
	ActAckErrors   ActionKind = "ack_errors"   // an operator accepted the wave's state: its error gate does not trip again
	ActReopenWave  ActionKind = "reopen_wave"  // a finished wave runs again (retry): running, errors accepted
	ActStartRun    ActionKind = "start_run"    // a new run of a running wave starts (resume)
	ActSetStatus   ActionKind = "set_status"   // rollout → running | paused | aborted | completed | partial | failed; runs end when it pauses or ends
)

// Action is one step of a plan.
type Action struct {
	Kind       ActionKind             `json:"kind"`
	Wave       *int                   `json:"wave,omitempty"`
	IDs        []int64                `json:"ids,omitempty"`
	WaveStatus flotilla.WaveStatus    `json:"wave_status,omitempty"`
	Status     flotilla.RolloutStatus `json:"status,omitempty"`
	Reason     string                 `json:"reason,omitempty"`
}

// Plan is what to do now and when to look again.
type Plan struct {
	Actions []Action `json:"actions"`
	// Next is when the rollout needs attention even if nothing happens
	// (a grace period ends, a timeout expires); zero for never.
	Next time.Time `json:"next,omitzero"`
}

// StartsWave reports whether the plan starts a wave: the one plan that
// releases devices of a wave that had not started.
func (p Plan) StartsWave() bool {
	for _, a := range p.Actions {
		if a.Kind == ActStartWave {
			return true
		}
	}
	return false
}

// planner holds the working copy a plan is computed on.
type planner struct {
	s     Snapshot
	now   time.Time
	p     flotilla.Policy
	plan  Plan
	waves []flotilla.Wave
	open  []Deployment
	// lapsedOut counts devices a lapsed schedule canceled: they were
	// eligible and did not get the update.
	lapsedOut int
	// rateOldest is the earliest release still inside the rate window.
	rateOldest time.Time
}

func intp(i int) *int { return &i }

// Compute computes the next actions for a running or paused rollout.
func Compute(s Snapshot, now time.Time) Plan {
	st := s.Rollout.Status
	if st != flotilla.RolloutRunning && st != flotilla.RolloutPaused {
		return Plan{}
	}
	pl := &planner{s: s, now: now, p: s.Rollout.Policy}
	pl.waves = make([]flotilla.Wave, len(s.Waves))
	for i, w := range s.Waves {
		w.Counts = cloneCounts(w.Counts)
		pl.waves[i] = w
	}
	pl.open = slices.Clone(s.Open)
	pl.run()
	return pl.plan
}

func cloneCounts(m map[flotilla.DeploymentState]int) map[flotilla.DeploymentState]int {
	out := make(map[flotilla.DeploymentState]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (pl *planner) add(a Action) { pl.plan.Actions = append(pl.plan.Actions, a) }

func (pl *planner) wakeAt(t time.Time) {
	if !t.After(pl.now) {
		return
	}
	if pl.plan.Next.IsZero() || t.Before(pl.plan.Next) {
		pl.plan.Next = t
	}
}

// move changes a deployment's state in the working copy.
func (pl *planner) move(d *Deployment, to flotilla.DeploymentState) {
	w := &pl.waves[d.Wave]
	w.Counts[d.State]--
	w.Counts[to]++
	d.State = to
}

func (pl *planner) run() {
	pl.timeouts()
	if pl.lapsed() {
		return
	}
	paused := pl.s.Rollout.Status == flotilla.RolloutPaused
	if !paused {
		pl.retries()
	}
	for i := range pl.waves {
		w := &pl.waves[i]
		switch w.Status {
		case flotilla.WaveScheduled:
			if paused || !pl.mayStart(i) {
				return
			}
			pl.add(Action{Kind: ActStartWave, Wave: intp(i)})
			w.Status = flotilla.WaveRunning
			now := pl.now
			w.StartedAt = &now
			fallthrough
		case flotilla.WaveRunning:
			if !paused {
				pl.release(i)
			}
			if stop := pl.gates(i); stop {
				return
			}
		}
	}
	pl.complete()
}

// timeouts ends in-flight deployments that outlived device_timeout.
func (pl *planner) timeouts() {
	limit := time.Duration(pl.p.DeviceTimeout)
	if limit <= 0 {
		return
	}
	var ids []int64
	for i := range pl.open {
		d := &pl.open[i]
		if !d.State.Active() || d.StartedAt == nil {
			continue
		}
		deadline := d.StartedAt.Add(limit)
		if !pl.now.Before(deadline) {
			ids = append(ids, d.ID)
			pl.move(d, flotilla.StateTimedOut)
			if d.Attempt <= pl.p.Retries {
				pl.s.Retryable = append(pl.s.Retryable, *d)
			}
		} else {
			pl.wakeAt(deadline)
		}
	}
	if len(ids) > 0 {
		pl.add(Action{Kind: ActTimeOut, IDs: ids, Reason: fmt.Sprintf("no outcome within device_timeout %s", limit)})
	}
}

// lapsed cancels everything once the maintenance schedule has no window
// left, and ends the rollout.
func (pl *planner) lapsed() bool {
	w := pl.s.Rollout.Window
	if w == nil {
		return false
	}
	mw, err := maintenance.Parse(*w)
	if err != nil || !mw.Lapsed(pl.now) {
		return false
	}
	var ids []int64
	for i := range pl.open {
		d := &pl.open[i]
		if d.State == flotilla.StateScheduled || d.State.Active() {
			ids = append(ids, d.ID)
			pl.move(d, flotilla.StateCanceled)
		}
	}
	if len(ids) > 0 {
		pl.add(Action{Kind: ActCancel, IDs: ids, Reason: "the maintenance schedule has no window left"})
	}
	pl.lapsedOut = len(ids)
	pl.finishRollout("the maintenance schedule lapsed")
	return true
}

// retries gives failed devices another attempt.
func (pl *planner) retries() {
	if pl.p.Retries <= 0 || len(pl.s.Retryable) == 0 {
		return
	}
	var ids []int64
	for _, d := range pl.s.Retryable {
		if d.Attempt > pl.p.Retries {
			continue
		}
		ids = append(ids, d.ID)
		// The new attempt is scheduled; the next plan releases it.
		w := &pl.waves[d.Wave]
		w.Counts[d.State]--
		w.Counts[flotilla.StateScheduled]++
	}
	if len(ids) > 0 {
		pl.add(Action{Kind: ActRetry, IDs: ids, Reason: "retrying failed devices"})
		pl.wakeAt(pl.now.Add(time.Millisecond))
	}
}

func (pl *planner) inFlight() int {
	n := 0
	for _, d := range pl.open {
		if d.State.Active() {
			n++
		}
	}
	return n
}

// rateAllowance is how many devices may be released now under the
// exponential rate, or -1 for no limit.
func (pl *planner) rateAllowance() int {
	r := pl.p.Rate
	if r == nil {
		return -1
	}
	rate := float64(r.StartPerMinute)
	if r.Factor > 1 && r.IncrementEvery > 0 {
		rate *= math.Pow(r.Factor, float64(pl.s.Successes/r.IncrementEvery))
	}
	if r.MaxPerMinute > 0 && rate > float64(r.MaxPerMinute) {
		rate = float64(r.MaxPerMinute)
	}
	recent := 0
	var oldest time.Time
	for _, t := range pl.s.ReleasedAt {
		if pl.now.Sub(t) < time.Minute {
			recent++
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	pl.rateOldest = oldest
	return max(int(rate)-recent, 0)
}

// release moves a running wave's scheduled devices to pending, skipping
// offline ones, within max_in_flight and the rate.
func (pl *planner) release(i int) {
	budget := -1
	if pl.p.MaxInFlight > 0 {
		budget = max(pl.p.MaxInFlight-pl.inFlight(), 0)
	}
	if a := pl.rateAllowance(); a >= 0 && (budget < 0 || a < budget) {
		budget = a
	}
	var rel, skip []int64
	released := 0
	for k := range pl.open {
		d := &pl.open[k]
		if d.Wave != i || d.State != flotilla.StateScheduled {
			continue
		}
		if pl.p.SkipOffline && (d.LastSeen == nil || pl.now.Sub(*d.LastSeen) > pl.p.Offline()) {
			skip = append(skip, d.ID)
			pl.move(d, flotilla.StateSkipped)
			continue
		}
		if budget >= 0 && released >= budget {
			if pl.p.Rate != nil {
				// Rate-limited: look again when the oldest release in the
				// window ages out.
				oldest := pl.rateOldest
				if oldest.IsZero() {
					oldest = pl.now
				}
				pl.wakeAt(oldest.Add(time.Minute))
			}
			continue
		}
		rel = append(rel, d.ID)
		pl.move(d, flotilla.StatePending)
		now := pl.now
		d.StartedAt = &now
		released++
		if pl.rateOldest.IsZero() {
			pl.rateOldest = now
		}
	}
	if len(skip) > 0 {
		pl.add(Action{Kind: ActSkip, Wave: intp(i), IDs: skip, Reason: fmt.Sprintf("offline: not seen for %s", pl.p.Offline())})
	}
	if len(rel) > 0 {
		pl.add(Action{Kind: ActRelease, Wave: intp(i), IDs: rel})
	}
}
