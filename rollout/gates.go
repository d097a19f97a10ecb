package rollout

import (
	"fmt"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// gatePassed reports whether wave i lets the next one start, and from when.
func (pl *planner) gatePassed(i int) (bool, time.Time) {
	w := pl.waves[i]
	grace := time.Duration(pl.p.GraceSeconds) * time.Second
	if w.SuccessAt != nil {
		return true, w.SuccessAt.Add(grace)
	}
	finished := w.Status == flotilla.WaveSucceeded || (w.Status == flotilla.WaveFailed && w.ErrorAck)
	if finished && w.FinishedAt != nil {
		return true, w.FinishedAt.Add(grace)
	}
	return false, time.Time{}
}

func (pl *planner) mayStart(i int) bool {
	if i == 0 {
		return true
	}
	ok, at := pl.gatePassed(i - 1)
	if !ok {
		return false
	}
	if pl.now.Before(at) {
		pl.wakeAt(at)
		return false
	}
	return true
}

// tally is a wave's counts as the gates see them.
type tally struct {
	eligible, success, failure, remaining int
}

func (pl *planner) tally(w flotilla.Wave) tally {
	c := w.Counts
	var t tally
	t.eligible = w.Size - c[flotilla.StateSkipped] - c[flotilla.StateCanceled]
	t.success = c[flotilla.StateSucceeded]
	t.failure = c[flotilla.StateFailed] + c[flotilla.StateTimedOut] + c[flotilla.StateRejected]
	if pl.p.RequireOK {
		t.success -= w.Unhealthy
		t.failure += w.Unhealthy
	}
	t.remaining = t.eligible - t.success - t.failure
	return t
}

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) * 100 / float64(of)
}

// gates evaluates a running wave's error and success gates; it reports
// whether planning must stop (the rollout pauses or ends).
func (pl *planner) gates(i int) bool {
	w := &pl.waves[i]
	t := pl.tally(*w)
	if t.eligible <= 0 {
		if pl.p.AbortOnZeroEligible {
			pl.abort(fmt.Sprintf("wave %d (%s) has no eligible device", i+1, w.Name))
			return true
		}
		pl.finishWave(i, flotilla.WaveSucceeded, "no eligible device")
		return false
	}
	if !w.ErrorAck && w.Status == flotilla.WaveRunning {
		var why string
		if th := pl.p.ErrorThreshold; th != nil && t.failure > 0 && pct(t.failure, t.eligible) >= *th {
			why = fmt.Sprintf("error gate: %d of %d devices (%.0f%%) failed in wave %d, threshold %g%%", t.failure, t.eligible, pct(t.failure, t.eligible), i+1, *th)
		} else if mf := pl.p.MaxFailuresPerWave; mf != nil && t.failure > *mf {
			why = fmt.Sprintf("error gate: %d devices failed in wave %d, more than max_failures_per_wave %d", t.failure, i+1, *mf)
		}
		if why != "" {
			pl.onError(why)
			return true
		}
	}
	if w.SuccessAt == nil && pct(t.success, t.eligible) >= pl.p.SuccessPct() {
		now := pl.now
		w.SuccessAt = &now
		pl.add(Action{Kind: ActSuccessGate, Wave: intp(i), Reason: fmt.Sprintf("%d of %d devices succeeded (threshold %g%%)", t.success, t.eligible, pl.p.SuccessPct())})
		if g := pl.p.GraceSeconds; g > 0 {
			pl.wakeAt(now.Add(time.Duration(g) * time.Second))
		}
	}
	if t.remaining > 0 || w.Status != flotilla.WaveRunning {
		return false
	}
	if w.SuccessAt != nil {
		pl.finishWave(i, flotilla.WaveSucceeded, fmt.Sprintf("%d of %d devices succeeded", t.success, t.eligible))
		return false
	}
	why := fmt.Sprintf("wave %d finished below its success threshold: %d of %d devices succeeded (%.0f%%, need %g%%)", i+1, t.success, t.eligible, pct(t.success, t.eligible), pl.p.SuccessPct())
	pl.finishWave(i, flotilla.WaveFailed, why)
	if !w.ErrorAck {
		pl.onError(why)
		return true
	}
	return false
}

func (pl *planner) finishWave(i int, st flotilla.WaveStatus, why string) {
	w := &pl.waves[i]
	if w.Status != flotilla.WaveRunning {
		return
	}
	w.Status = st
	now := pl.now
	w.FinishedAt = &now
	pl.add(Action{Kind: ActFinishWave, Wave: intp(i), WaveStatus: st, Reason: why})
}

func (pl *planner) onError(why string) {
	if pl.p.OnError() == flotilla.ErrorActionAbort {
		pl.abort(why)
		return
	}
	if pl.s.Rollout.Status == flotilla.RolloutPaused {
		return
	}
	pl.add(Action{Kind: ActSetStatus, Status: flotilla.RolloutPaused, Reason: why})
}

// abort ends the rollout and cancels everything still open, as a manual
// abort does.
func (pl *planner) abort(why string) {
	pl.plan.Actions = append(pl.plan.Actions, abortActions(why)...)
}

// abortActions cancel every open deployment, abort the waves that have not
// ended and set the rollout aborted.
func abortActions(why string) []Action {
	return []Action{
		{Kind: ActCancel, Reason: "rollout aborted: " + why},
		{Kind: ActAbortWaves},
		{Kind: ActSetStatus, Status: flotilla.RolloutAborted, Reason: why},
	}
}

// complete ends the rollout once every wave has finished.
func (pl *planner) complete() {
	if pl.s.Rollout.Status != flotilla.RolloutRunning {
		return
	}
	for _, w := range pl.waves {
		if w.Status == flotilla.WaveScheduled || w.Status == flotilla.WaveRunning {
			return
		}
	}
	pl.finishRollout("")
}

func (pl *planner) finishRollout(why string) {
	eligible, success := pl.lapsedOut, 0
	for _, w := range pl.waves {
		t := pl.tally(w)
		eligible += max(t.eligible, 0)
		success += t.success
	}
	ratio := 1.0
	if eligible > 0 {
		ratio = float64(success) / float64(eligible)
	}
	status := flotilla.RolloutCompleted
	switch {
	case eligible > 0 && success == 0:
		status = flotilla.RolloutFailed
	case ratio < pl.p.MinRatio():
		status = flotilla.RolloutPartial
	}
	reason := fmt.Sprintf("%d of %d eligible devices succeeded (%.1f%%, min_success_ratio %g)", success, eligible, ratio*100, pl.p.MinRatio())
	if why != "" {
		reason = why + "; " + reason
	}
	pl.add(Action{Kind: ActSetStatus, Status: status, Reason: reason})
}
