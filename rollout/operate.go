package rollout

import (
	"fmt"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// Op is an operator's action on a rollout.
type Op string

// The operator actions.
const (
	OpPause    Op = "pause"
	OpResume   Op = "resume"
	OpAbort    Op = "abort"
	OpRetry    Op = "retry"
	OpNextWave Op = "next-wave"
)

// Ops lists the operator actions.
var Ops = []Op{OpPause, OpResume, OpAbort, OpRetry, OpNextWave}

// Operate computes what an operator's op does to the rollout in s, as
// actions applied like a plan's. It returns EConflict when the rollout's
// status does not allow op (naming the status) and EInvalid for an unknown
// op. A retry needs s.Failed.
func Operate(s Snapshot, op Op, now time.Time) ([]Action, error) {
	r := s.Rollout
	conflict := func() error {
		return flotilla.Errorf(flotilla.EConflict, "cannot %s rollout %s: it is %s", op, r.ID, r.Status)
	}
	switch op {
	case OpPause:
		if r.Status != flotilla.RolloutRunning {
			return nil, conflict()
		}
		return []Action{{Kind: ActSetStatus, Status: flotilla.RolloutPaused, Reason: "paused by an operator"}}, nil
	case OpResume:
		if r.Status != flotilla.RolloutPaused {
			return nil, conflict()
		}
		// Resuming accepts the state of the waves whose gate tripped.
		var acts []Action
		for _, w := range s.Waves {
			if w.Status == flotilla.WaveRunning || w.Status == flotilla.WaveFailed {
				acts = append(acts, Action{Kind: ActAckErrors, Wave: intp(w.Index)})
			}
		}
		for _, w := range s.Waves {
			if w.Status == flotilla.WaveRunning {
				acts = append(acts, Action{Kind: ActStartRun, Wave: intp(w.Index)})
			}
		}
		return append(acts, Action{Kind: ActSetStatus, Status: flotilla.RolloutRunning, Reason: "resumed by an operator"}), nil
	case OpAbort:
		if r.Status.Finished() {
			return nil, conflict()
		}
		return abortActions("aborted by an operator"), nil
	case OpRetry:
		if r.StartedAt == nil || r.Status == flotilla.RolloutAborted {
			return nil, conflict()
		}
		if len(s.Failed) == 0 {
			return nil, flotilla.Errorf(flotilla.EConflict, "rollout %s has no failed, timed-out or skipped device to retry", r.ID)
		}
		ids := make([]int64, len(s.Failed))
		waves := map[int]bool{}
		for i, d := range s.Failed {
			ids[i] = d.ID
			waves[d.Wave] = true
		}
		acts := []Action{{Kind: ActRetry, IDs: ids, Reason: "retried by an operator"}}
		for _, w := range s.Waves {
			if waves[w.Index] && w.Status != flotilla.WaveScheduled {
				acts = append(acts, Action{Kind: ActReopenWave, Wave: intp(w.Index), Reason: "retrying"}, Action{Kind: ActStartRun, Wave: intp(w.Index)})
			}
		}
		return append(acts, Action{Kind: ActSetStatus, Status: flotilla.RolloutRunning, Reason: fmt.Sprintf("retrying %d devices", len(ids))}), nil
	case OpNextWave:
		if r.Status != flotilla.RolloutRunning && r.Status != flotilla.RolloutPaused {
			return nil, conflict()
		}
		for _, w := range s.Waves {
			if w.Status == flotilla.WaveScheduled {
				return []Action{{Kind: ActStartWave, Wave: intp(w.Index), Reason: "started by an operator"}}, nil
			}
		}
		return nil, flotilla.Errorf(flotilla.EConflict, "rollout %s has no wave left to start", r.ID)
	}
	return nil, flotilla.Errorf(flotilla.EInvalid, "unknown rollout action %q: use pause, resume, abort, retry or next-wave", op)
}
