package flotilla

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RolloutStatus is where a rollout stands.
type RolloutStatus string

// The rollout lifecycle: draft → creating → ready → running ⇄ paused →
// completed | partial | failed | aborted.
const (
	RolloutDraft     RolloutStatus = "draft"
	RolloutCreating  RolloutStatus = "creating"
	RolloutReady     RolloutStatus = "ready"
	RolloutRunning   RolloutStatus = "running"
	RolloutPaused    RolloutStatus = "paused"
	RolloutCompleted RolloutStatus = "completed"
	RolloutPartial   RolloutStatus = "partial"
	RolloutFailed    RolloutStatus = "failed"
	RolloutAborted   RolloutStatus = "aborted"
)

// Finished reports whether the rollout has ended.
func (s RolloutStatus) Finished() bool {
	switch s {
	case RolloutCompleted, RolloutPartial, RolloutFailed, RolloutAborted:
		return true
	}
	return false
}

// WaveStatus is where a wave stands.
type WaveStatus string

// Wave statuses.
const (
	WaveScheduled WaveStatus = "scheduled" // not started
	WaveRunning   WaveStatus = "running"   // devices released
	WaveSucceeded WaveStatus = "succeeded" // all finished, success gate met
	WaveFailed    WaveStatus = "failed"    // finished below its gate, or its error gate tripped
	WaveAborted   WaveStatus = "aborted"
)

// StateSkipped marks a rollout deployment whose device was offline when its
// wave released it (policy skip_offline); retry re-runs it.
const StateSkipped DeploymentState = "skipped"

// Duration is a time.Duration that JSON reads from "90s"/"10m" strings or a
// number of seconds, and writes as a string.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*d = 0
		return nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(time.Duration(f * float64(time.Second)))
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("a duration is a string like \"10m\" or a number of seconds")
	}
	v, err := time.ParseDuration(str)
	if err != nil {
		return fmt.Errorf("duration %q: use a form like 90s, 10m or 1h30m", str)
	}
	*d = Duration(v)
	return nil
}

// Rate is an exponential release rate, as AWS IoT Jobs has it: start at
// StartPerMinute devices a minute and multiply by Factor for every
// IncrementEvery successes, up to MaxPerMinute.
type Rate struct {
	StartPerMinute int     `json:"start_per_minute"`
	Factor         float64 `json:"factor,omitempty"`
	IncrementEvery int     `json:"increment_every,omitempty"`
	MaxPerMinute   int     `json:"max_per_minute,omitempty"`
}

// Policy is how a rollout moves from wave to wave. Percentages are 0-100;
// MinSuccessRatio is 0-1.
type Policy struct {
	// A wave counts as successful once this % of its eligible devices
	// succeeded; the next wave starts GraceSeconds later.
	SuccessThreshold *float64 `json:"success_threshold,omitempty"`
	GraceSeconds     int      `json:"grace_seconds,omitempty"`
	// The error gate trips when this % of a wave's eligible devices failed,
	// or more than MaxFailuresPerWave did; then ErrorAction (pause|abort).
	ErrorThreshold     *float64 `json:"error_threshold,omitempty"`
	MaxFailuresPerWave *int     `json:"max_failures_per_wave,omitempty"`
	ErrorAction        string   `json:"error_action,omitempty"`
	// RequireOK counts a device as succeeded only when it reported healthy
	// after installing ("health: ok").
	RequireOK bool `json:"require_ok,omitempty"`
	// SkipOffline skips devices not seen for OfflineAfter when their wave
	// releases them; they are counted apart and can be retried.
	SkipOffline  bool     `json:"skip_offline,omitempty"`
	OfflineAfter Duration `json:"offline_after,omitempty"`
	// MinSuccessRatio decides the final status: completed at or above it,
	// partial below.
	MinSuccessRatio *float64 `json:"min_success_ratio,omitempty"`
	// AbortOnZeroEligible aborts when a wave has no eligible device.
	AbortOnZeroEligible bool `json:"abort_on_zero_eligible,omitempty"`
	// DeviceTimeout turns an in-flight deployment timed_out.
	DeviceTimeout Duration `json:"device_timeout,omitempty"`
	// MaxInFlight bounds devices updating at once; Rate paces releases.
	MaxInFlight int   `json:"max_in_flight,omitempty"`
	Rate        *Rate `json:"rate,omitempty"`
	// Retries re-runs a failed or timed-out device this many times.
	Retries int `json:"retries,omitempty"`
}

// Error actions.
const (
	ErrorActionPause = "pause"
	ErrorActionAbort = "abort"
)

// Defaults of a policy's knobs.
const (
	DefaultSuccessThreshold = 100.0
	DefaultMinSuccessRatio  = 1.0
	DefaultOfflineAfter     = 10 * time.Minute
)

// SuccessPct returns the success threshold in percent.
func (p Policy) SuccessPct() float64 {
	if p.SuccessThreshold == nil {
		return DefaultSuccessThreshold
	}
	return *p.SuccessThreshold
}

// MinRatio returns the minimum success ratio.
func (p Policy) MinRatio() float64 {
	if p.MinSuccessRatio == nil {
		return DefaultMinSuccessRatio
	}
	return *p.MinSuccessRatio
}

// Offline returns how long unseen makes a device offline.
func (p Policy) Offline() time.Duration {
	if p.OfflineAfter <= 0 {
		return DefaultOfflineAfter
	}
	return time.Duration(p.OfflineAfter)
}

// OnError returns the error action.
func (p Policy) OnError() string {
	if p.ErrorAction == "" {
		return ErrorActionPause
	}
	return p.ErrorAction
}

// Validate checks ranges and says which knob is wrong.
func (p Policy) Validate() error {
	pct := func(name string, v *float64) error {
		if v != nil && (*v < 0 || *v > 100) {
			return Errorf(EInvalid, "policy.%s must be a percentage from 0 to 100, got %g", name, *v)
		}
		return nil
	}
	if err := pct("success_threshold", p.SuccessThreshold); err != nil {
		return err
	}
	if err := pct("error_threshold", p.ErrorThreshold); err != nil {
		return err
	}
	if p.MinSuccessRatio != nil && (*p.MinSuccessRatio < 0 || *p.MinSuccessRatio > 1) {
		return Errorf(EInvalid, "policy.min_success_ratio must be from 0 to 1, got %g", *p.MinSuccessRatio)
	}
	if p.ErrorAction != "" && p.ErrorAction != ErrorActionPause && p.ErrorAction != ErrorActionAbort {
		return Errorf(EInvalid, "policy.error_action %q is invalid: use pause or abort", p.ErrorAction)
	}
	switch {
	case p.GraceSeconds < 0:
		return Errorf(EInvalid, "policy.grace_seconds must not be negative")
	case p.MaxFailuresPerWave != nil && *p.MaxFailuresPerWave < 0:
		return Errorf(EInvalid, "policy.max_failures_per_wave must not be negative")
	case p.MaxInFlight < 0:
		return Errorf(EInvalid, "policy.max_in_flight must not be negative")
	case p.Retries < 0 || p.Retries > 10:
		return Errorf(EInvalid, "policy.retries must be from 0 to 10")
	case p.DeviceTimeout < 0 || p.OfflineAfter < 0:
		return Errorf(EInvalid, "policy durations must not be negative")
	}
	if r := p.Rate; r != nil {
		if r.StartPerMinute < 1 {
			return Errorf(EInvalid, "policy.rate.start_per_minute must be at least 1")
		}
		if r.Factor != 0 && (r.Factor < 1 || r.Factor > 10) {
			return Errorf(EInvalid, "policy.rate.factor must be from 1 to 10")
		}
		if r.IncrementEvery < 0 || r.MaxPerMinute < 0 {
			return Errorf(EInvalid, "policy.rate.increment_every and max_per_minute must not be negative")
		}
	}
	return nil
}

// WaveSpec is one explicit group of a rollout: a selector, a count or a
// percentage of the rollout's devices (hawkBit's deployment groups).
type WaveSpec struct {
	Name     string   `json:"name,omitempty"`
	Percent  *float64 `json:"percent,omitempty"`
	Count    *int     `json:"count,omitempty"`
	Selector string   `json:"selector,omitempty"`
}

// Rollout is an artifact going to a snapshot of devices in waves.
type Rollout struct {
	ID              string
	Tenant          string
	Name            string
	ArtifactID      int64
	ArtifactName    string
	ArtifactVersion string
	Selector        string
	Type            DeploymentType
	ForceAt         *time.Time
	Window          *MaintenanceWindow
	Policy          Policy
	PolicyName      string
	Delivery        string
	Channel         string
	WaveCount       int
	Groups          []WaveSpec
	// DeviceIDs, when set, is the rollout's device list instead of the
	// devices matching Selector.
	DeviceIDs []string
	Status    RolloutStatus
	Reason    string
	// StartWhenReady starts the rollout as soon as its snapshot is taken.
	StartWhenReady bool
	Total          int
	CreatedAt      time.Time
	UpdatedAt      time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	Version        int64
}

// Wave is one wave of a rollout.
type Wave struct {
	RolloutID string
	Index     int
	Name      string
	Size      int
	Status    WaveStatus
	StartedAt *time.Time
	// SuccessAt is when the success gate was first met; the next wave
	// starts a grace period later.
	SuccessAt  *time.Time
	FinishedAt *time.Time
	// ErrorAck is set when an operator resumed after this wave's error
	// gate tripped: the gate does not trip again for this wave.
	ErrorAck bool
	Reason   string
	// Unwritten is set while the wave's deployments are not written yet: a
	// large rollout writes its first wave when it starts and the others
	// in the background, each before its wave starts. Its members count
	// as scheduled (canceled once the rollout ended).
	Unwritten bool
	// Counts of the wave's devices by the state of their latest attempt.
	Counts map[DeploymentState]int
	// Unhealthy counts succeeded devices without a health report, which
	// require_ok does not count as successes.
	Unhealthy int
	// Waiting counts released devices that have not fetched their update
	// yet: they poll at the server's interval.
	Waiting int
}

// RolloutRun records one run of a wave.
type RolloutRun struct {
	ID        int64
	RolloutID string
	Wave      int
	StartedAt time.Time
	EndedAt   *time.Time
	Counts    map[DeploymentState]int
	Reason    string
}

// NamedPolicy is a named, reusable rollout policy.
type NamedPolicy struct {
	Tenant    string
	Name      string
	Policy    Policy
	CreatedAt time.Time
	UpdatedAt time.Time
}

// RolloutFilter narrows ListRollouts.
type RolloutFilter struct {
	Status  RolloutStatus
	Channel string
}

// RolloutDeviceFilter narrows ListRolloutDevices.
type RolloutDeviceFilter struct {
	State   DeploymentState
	Wave    *int
	AfterID string
	Limit   int
}

// RolloutDevice is one device of a rollout with its current attempt.
type RolloutDevice struct {
	DeviceID     string
	Wave         int
	DeploymentID int64
	State        DeploymentState // "scheduled" before the rollout starts
	Attempt      int
	Healthy      *bool
	Message      string
	UpdatedAt    *time.Time
}

// Channel is a release channel: a name pointing at an artifact
// version, the devices that follow it, and how new versions roll out.
type Channel struct {
	Tenant          string
	Name            string
	ArtifactID      int64
	ArtifactName    string
	ArtifactVersion string
	Selector        string
	Policy          Policy
	PolicyName      string
	Waves           int
	RolloutID       string
	CreatedAt       time.Time
	UpdatedAt       time.Time
}
