package flotilla

import (
	"fmt"
	"slices"
	"time"
)

// DeploymentState is where a deployment (hawkBit's "action") stands.
type DeploymentState string

// The deployment states.
const (
	StateScheduled       DeploymentState = "scheduled"        // created, its wave has not started
	StatePending         DeploymentState = "pending"          // offered to the device
	StateDownloading     DeploymentState = "downloading"      // device reports download under way
	StateDownloaded      DeploymentState = "downloaded"       // bytes on the device, install not started
	StateInstalling      DeploymentState = "installing"       // device is installing
	StateSucceeded       DeploymentState = "succeeded"        // terminal
	StateFailed          DeploymentState = "failed"           // terminal
	StateCancelRequested DeploymentState = "cancel_requested" // waiting for the device to confirm a cancel
	StateCanceled        DeploymentState = "canceled"         // terminal
	StateRejected        DeploymentState = "rejected"         // terminal: the device refused the update
	StateTimedOut        DeploymentState = "timed_out"        // terminal: no outcome within the policy's timeout
)

// AllDeploymentStates lists the states in lifecycle order.
var AllDeploymentStates = []DeploymentState{
	StateScheduled, StatePending, StateDownloading, StateDownloaded, StateInstalling,
	StateSucceeded, StateFailed, StateCancelRequested, StateCanceled, StateRejected, StateTimedOut, StateSkipped,
}

// Terminal reports whether no further transition can happen.
func (s DeploymentState) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCanceled, StateRejected, StateTimedOut, StateSkipped:
		return true
	}
	return false
}

// Active reports whether the device is (or may be) working on it.
func (s DeploymentState) Active() bool {
	switch s {
	case StatePending, StateDownloading, StateDownloaded, StateInstalling, StateCancelRequested:
		return true
	}
	return false
}

// Failure reports whether the state counts against a rollout's error gate.
func (s DeploymentState) Failure() bool {
	return s == StateFailed || s == StateTimedOut || s == StateRejected
}

// ActiveStates are the states in which a deployment occupies its device.
var ActiveStates = []DeploymentState{StatePending, StateDownloading, StateDownloaded, StateInstalling, StateCancelRequested}

// DeploymentType says how forcefully the device should install.
type DeploymentType string

// The deployment types, as hawkBit has them.
const (
	TypeForced       DeploymentType = "forced"
	TypeSoft         DeploymentType = "soft"
	TypeDownloadOnly DeploymentType = "downloadonly"
	TypeTimeForced   DeploymentType = "timeforced"
)

// ParseDeploymentType validates a type; "" means forced.
func ParseDeploymentType(s string) (DeploymentType, error) {
	switch DeploymentType(s) {
	case "":
		return TypeForced, nil
	case TypeForced, TypeSoft, TypeDownloadOnly, TypeTimeForced:
		return DeploymentType(s), nil
	}
	return "", Errorf(EInvalid, "type %q is invalid: use forced, soft, downloadonly or timeforced", s)
}

// Delivery modes.
const (
	DeliveryPull = "pull"
	DeliveryPush = "push"
)

// MaintenanceWindow restricts installation to recurring windows.
type MaintenanceWindow struct {
	Schedule string `json:"schedule"` // Quartz cron with seconds
	Duration string `json:"duration"` // HH:MM:SS
	Timezone string `json:"timezone"` // +02:00 or an IANA name
}

// Deployment is one artifact assigned to one device, directly or by a
// rollout wave.
type Deployment struct {
	ID         int64
	Tenant     string
	DeviceID   string
	ArtifactID int64
	// Artifact name and version, for display without a join.
	ArtifactName    string
	ArtifactVersion string
	RolloutID       string
	Wave            int
	Attempt         int
	Type            DeploymentType
	// ForceAt turns a timeforced deployment forced.
	ForceAt  *time.Time
	Window   *MaintenanceWindow
	Delivery string
	// UpdateID is the caller-supplied id of a push delivery.
	UpdateID    string
	State       DeploymentState
	PrevState   DeploymentState // before cancel_requested, restored when a cancel is rejected
	ProgressCnt int
	ProgressOf  int
	// Healthy is set when the device reported its health after installing.
	Healthy     *bool
	Message     string // the latest detail, for lists
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time // when it became pending
	RetrievedAt *time.Time // when the device first fetched it
	FinishedAt  *time.Time
	// DeviceEvents counts the history entries the device reported, for
	// the quota on them.
	DeviceEvents int
	History      []DeploymentEvent
}

// DeploymentEvent is one entry of a deployment's history: a device's
// feedback or a server-side transition.
type DeploymentEvent struct {
	At        time.Time `json:"at"`
	State     DeploymentState
	Execution string   `json:"execution,omitempty"`
	Finished  string   `json:"finished,omitempty"`
	Cnt       int      `json:"cnt,omitempty"`
	Of        int      `json:"of,omitempty"`
	Code      *int     `json:"code,omitempty"`
	Details   []string `json:"details,omitempty"`
	Source    string   `json:"source"` // device or server
}

// DDI execution values.
const (
	ExecClosed     = "closed"
	ExecProceeding = "proceeding"
	ExecCanceled   = "canceled"
	ExecScheduled  = "scheduled"
	ExecRejected   = "rejected"
	ExecResumed    = "resumed"
	ExecDownloaded = "downloaded"
	ExecDownload   = "download"
)

// DDI finished values.
const (
	FinishedSuccess = "success"
	FinishedFailure = "failure"
	FinishedNone    = "none"
)

// Feedback is a device's report on a deployment, in DDI terms.
type Feedback struct {
	Execution string
	Finished  string
	Cnt, Of   int
	Code      *int
	Details   []string
}

// ValidateFeedback checks the enumerations and numbers of a feedback.
func ValidateFeedback(f Feedback) error {
	if !slices.Contains([]string{ExecClosed, ExecProceeding, ExecCanceled, ExecScheduled, ExecRejected, ExecResumed, ExecDownloaded, ExecDownload}, f.Execution) {
		return Errorf(EInvalid, "status.execution %q is invalid: use closed, proceeding, canceled, scheduled, rejected, resumed, downloaded or download", f.Execution)
	}
	if f.Finished != "" && !slices.Contains([]string{FinishedSuccess, FinishedFailure, FinishedNone}, f.Finished) {
		return Errorf(EInvalid, "status.result.finished %q is invalid: use success, failure or none", f.Finished)
	}
	if f.Cnt < 0 || f.Of < 0 {
		return Errorf(EInvalid, "status.result.progress counts must not be negative")
	}
	if len(f.Details) > 100 {
		return Errorf(EInvalid, "status.details has %d entries; at most 100 are allowed", len(f.Details))
	}
	for _, d := range f.Details {
		if len(d) > 4096 {
			return Errorf(EInvalid, "a status.details entry is longer than 4096 characters")
		}
	}
	return nil
}

// HealthDetail is the detail line by which a device reports that it checked
// its health after installing ("health: ok" or "health: failed ...").
const HealthDetail = "health:"

// NextState computes the state a deployment moves to on a device's
// feedback to its deploymentBase. It returns EGone for a deployment that is
// no longer active.
func NextState(cur DeploymentState, typ DeploymentType, f Feedback) (DeploymentState, error) {
	if !cur.Active() {
		return cur, Errorf(EGone, "deployment is %s and takes no more feedback", cur)
	}
	switch f.Execution {
	case ExecClosed:
		if f.Finished == FinishedFailure {
			return StateFailed, nil
		}
		return StateSucceeded, nil
	case ExecCanceled:
		return StateCanceled, nil
	case ExecRejected:
		return StateRejected, nil
	case ExecDownload:
		if cur == StateCancelRequested {
			return cur, nil
		}
		return StateDownloading, nil
	case ExecDownloaded:
		if typ == TypeDownloadOnly {
			return StateSucceeded, nil
		}
		if cur == StateCancelRequested {
			return cur, nil
		}
		return StateDownloaded, nil
	case ExecProceeding, ExecResumed:
		switch cur {
		case StatePending:
			return StateDownloading, nil
		case StateDownloaded:
			return StateInstalling, nil
		}
		return cur, nil
	case ExecScheduled:
		return cur, nil
	}
	return cur, Errorf(EInvalid, "status.execution %q is invalid", f.Execution)
}

// NextCancelState computes the state on a device's feedback to a cancel
// request: confirmed cancels end the deployment, rejected ones restore the
// state it had before.
func NextCancelState(cur, prev DeploymentState, f Feedback) (DeploymentState, error) {
	if cur != StateCancelRequested {
		return cur, Errorf(EGone, "no cancel is pending: the deployment is %s", cur)
	}
	if prev == "" {
		prev = StatePending
	}
	switch f.Execution {
	case ExecClosed, ExecCanceled:
		if f.Finished == FinishedFailure {
			return prev, nil
		}
		return StateCanceled, nil
	case ExecRejected:
		return prev, nil
	case ExecProceeding, ExecScheduled, ExecResumed, ExecDownload, ExecDownloaded:
		return cur, nil
	}
	return cur, Errorf(EInvalid, "status.execution %q is invalid", f.Execution)
}

// ReportedHealth extracts a health report from feedback details.
func ReportedHealth(details []string) *bool {
	for _, d := range details {
		if len(d) >= len(HealthDetail) && d[:len(HealthDetail)] == HealthDetail {
			ok := len(d) >= len(HealthDetail)+3 && d[len(HealthDetail):len(HealthDetail)+3] == " ok"
			return &ok
		}
	}
	return nil
}

// String names a deployment in logs.
func (d Deployment) String() string {
	return fmt.Sprintf("deployment %d (%s %s on %s)", d.ID, d.ArtifactName, d.ArtifactVersion, d.DeviceID)
}
