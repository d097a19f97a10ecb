package flotilla

import "time"

// Change is the outcome of one transition of a deployment: the deployment
// as it is to be stored and the history entry to append (nil for none).
//
// Every state change of a deployment — a device's feedback over DDI, a push
// node's report, an operator's cancel, a superseding assignment, a
// rollout's timeout — is computed by one of the functions in this file, so
// that every transport follows the same rules.
type Change struct {
	Deployment Deployment
	Event      *DeploymentEvent
	// Earlier are the history entries of steps folded into this change
	// (ApplySteps), oldest first, written before Event.
	Earlier []DeploymentEvent
	// Installed is set when the deployment succeeded with this change: the
	// device now runs DeviceVersion and is asked for its attributes.
	Installed bool
	// DeviceVersion is the version the device runs after an install: the
	// deployment's artifact version unless the device reported its own.
	DeviceVersion string
}

// Event sources.
const (
	SourceDevice = "device"
	SourceServer = "server"
)

// ApplyFeedback computes the effect of a device's feedback on a deployment:
// to its deploymentBase, or (cancel) to a cancel request. It returns EGone
// for a deployment that takes no more feedback and EInvalid for an unknown
// execution.
func ApplyFeedback(d Deployment, f Feedback, cancel bool, now time.Time) (Change, error) {
	var next DeploymentState
	var err error
	if cancel {
		next, err = NextCancelState(d.State, d.PrevState, f)
	} else {
		next, err = NextState(d.State, d.Type, f)
	}
	if err != nil {
		return Change{}, err
	}
	before := d.State
	if before == StateCancelRequested && next != StateCancelRequested && !next.Terminal() {
		d.PrevState = ""
	}
	d.State, d.UpdatedAt = next, now
	if f.Of > 0 {
		d.ProgressCnt, d.ProgressOf = f.Cnt, f.Of
	}
	if h := ReportedHealth(f.Details); h != nil {
		d.Healthy = h
	}
	if len(f.Details) > 0 {
		d.Message = f.Details[len(f.Details)-1]
	}
	ch := Change{}
	if next.Terminal() && d.FinishedAt == nil {
		d.FinishedAt = &now
		if next == StateSucceeded {
			if d.ProgressOf > 0 {
				d.ProgressCnt = d.ProgressOf
			}
			ch.Installed, ch.DeviceVersion = true, d.ArtifactVersion
		}
	}
	ev := &DeploymentEvent{At: now, State: next, Execution: f.Execution, Finished: f.Finished, Cnt: f.Cnt, Of: f.Of,
		Code: f.Code, Details: f.Details, Source: SourceDevice}
	if cancel {
		ev.Details = append([]string{"cancel feedback"}, f.Details...)
	}
	ch.Deployment, ch.Event = d, ev
	return ch, nil
}

// Step is a device's feedback and when it was observed.
type Step struct {
	Feedback Feedback
	At       time.Time
}

// ApplySteps applies several feedbacks, in order, as one change: the
// deployment ends where the last one leaves it, and its history keeps an
// entry for every step. A transport that watched a device pass through
// states faster than it could write them records them at once.
func ApplySteps(d Deployment, steps []Step) (Change, error) {
	if len(steps) == 0 {
		return Change{}, Errorf(EInvalid, "no feedback to apply")
	}
	// Only the last step can end the deployment: one that ended takes no
	// more feedback (EGone), so the last change says whether it installed.
	var ch Change
	var earlier []DeploymentEvent
	for i, st := range steps {
		if i > 0 {
			earlier = append(earlier, *ch.Event)
		}
		var err error
		if ch, err = ApplyFeedback(d, st.Feedback, false, st.At); err != nil {
			return Change{}, err
		}
		d = ch.Deployment
	}
	ch.Earlier = earlier
	return ch, nil
}

// ApplyProgress records how far a device got without a state change and
// without a history entry: for transports that report progress between
// steps (a push node receiving bytes). EGone once the deployment ended.
func ApplyProgress(d Deployment, cnt, of int, now time.Time) (Change, error) {
	if !d.State.Active() {
		return Change{}, Errorf(EGone, "deployment %d is %s and takes no more progress", d.ID, d.State)
	}
	if of > 0 {
		d.ProgressCnt, d.ProgressOf = cnt, of
	}
	d.UpdatedAt = now
	return Change{Deployment: d}, nil
}

// CancelOutcome is where a server-initiated cancel takes a deployment in
// state s: one the device never fetched ends at once (canceled), one it
// works on waits for the device (cancel_requested). It returns "" when a
// cancel does not apply: the deployment ended or a cancel is pending.
func CancelOutcome(s DeploymentState, retrieved bool) DeploymentState {
	switch {
	case s.Terminal(), s == StateCancelRequested:
		return ""
	case s == StateScheduled || (s == StatePending && !retrieved):
		return StateCanceled
	}
	return StateCancelRequested
}

// RequestCancel computes a server-initiated cancel (an operator's, a
// superseding assignment's, a lapsed window's). EConflict for a deployment
// that already ended; a pending cancel is left as it is, with no event.
func RequestCancel(d Deployment, now time.Time, why string) (Change, error) {
	to := CancelOutcome(d.State, d.RetrievedAt != nil)
	switch {
	case d.State.Terminal():
		return Change{}, Errorf(EConflict, "deployment %d is already %s", d.ID, d.State)
	case to == "":
		return Change{Deployment: d}, nil
	case to == StateCanceled:
		d.State, d.FinishedAt = StateCanceled, &now
	default:
		d.PrevState, d.State = d.State, StateCancelRequested
	}
	d.UpdatedAt, d.Message = now, why
	return Change{Deployment: d, Event: &DeploymentEvent{At: now, State: d.State, Source: SourceServer, Details: []string{why}}}, nil
}

// ForceQuit ends a deployment whose cancel the device never acknowledged
// (hawkBit's force quit): it is canceled on the server's word alone. Only a
// deployment being canceled can be force-quit.
func ForceQuit(d Deployment, now time.Time) (Change, error) {
	if d.State != StateCancelRequested {
		return Change{}, Errorf(EConflict, "deployment %d is %s: only an action being canceled can be force-quit; cancel it first", d.ID, d.State)
	}
	why := "force-quit by an operator: the device never confirmed the cancel"
	d.PrevState, d.State, d.UpdatedAt, d.FinishedAt, d.Message = "", StateCanceled, now, &now, why
	return Change{Deployment: d, Event: &DeploymentEvent{At: now, State: StateCanceled, Source: SourceServer, Details: []string{why}}}, nil
}

// Fail ends an open deployment as failed for a reason the server found
// (the device does not exist, its node cannot be reached, the artifact is
// gone). EGone for a deployment that already ended.
func Fail(d Deployment, now time.Time, why string) (Change, error) {
	if d.State.Terminal() {
		return Change{}, Errorf(EGone, "deployment %d is already %s", d.ID, d.State)
	}
	d.State, d.PrevState, d.UpdatedAt, d.FinishedAt, d.Message = StateFailed, "", now, &now, why
	return Change{Deployment: d, Event: &DeploymentEvent{At: now, State: StateFailed, Source: SourceServer, Details: []string{why}}}, nil
}

// Retrieve records that the device fetched what it should run; the first
// fetch only, the state does not change.
func Retrieve(d Deployment, now time.Time) Change {
	if d.RetrievedAt != nil {
		return Change{Deployment: d}
	}
	d.RetrievedAt, d.UpdatedAt = &now, now
	return Change{Deployment: d, Event: &DeploymentEvent{At: now, State: d.State, Source: SourceServer, Details: []string{"retrieved by the device"}}}
}

// Move is a transition the server applies to many deployments at once,
// as a rollout's plan does.
type Move string

// The bulk moves.
const (
	MoveRelease Move = "release"  // a wave releases its devices: scheduled → pending
	MoveSkip    Move = "skip"     // an offline device is passed over: scheduled → skipped
	MoveTimeOut Move = "time_out" // no outcome in time: in flight → timed_out
)

// From lists the states a move applies to; deployments in other states are
// left alone.
func (m Move) From() []DeploymentState {
	switch m {
	case MoveRelease, MoveSkip:
		return []DeploymentState{StateScheduled}
	case MoveTimeOut:
		return ActiveStates
	}
	return nil
}

// To is the state a move leads to.
func (m Move) To() DeploymentState {
	switch m {
	case MoveRelease:
		return StatePending
	case MoveSkip:
		return StateSkipped
	case MoveTimeOut:
		return StateTimedOut
	}
	return ""
}

// Ends reports whether the move ends the deployment (sets FinishedAt).
func (m Move) Ends() bool { return m.To().Terminal() }
