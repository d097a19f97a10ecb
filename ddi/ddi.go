// Package ddi holds the wire types of hawkBit's Direct Device Integration
// API, version 1, as Flotilla serves it under
// /{tenant}/controller/v1/{controllerId}.
//
// Devices and the server share these types so that the protocol is defined
// once. They follow hawkBit's JSON field names exactly, because existing
// clients (SWUpdate, RAUC's rauc-hawkbit-updater, Zephyr) parse them.
//
// Version history:
//   - v1 (2026-11): poll, deploymentBase, feedback, cancelAction,
//     installedBase, configData, artifact download with MD5SUM; Flotilla
//     accepts the "download" and "downloaded" executions of newer hawkBit.
package ddi

import (
	"fmt"
	"strings"
	"time"
)

// Link is a HAL link.
type Link struct {
	Href string `json:"href"`
}

// Poll is the answer to GET /{tenant}/controller/v1/{controllerId}.
type Poll struct {
	Config PollConfig `json:"config"`
	Links  PollLinks  `json:"_links,omitempty"`
}

// PollConfig tells the device when to poll again.
type PollConfig struct {
	Polling Polling `json:"polling"`
}

// Polling carries the sleep as HH:MM:SS.
type Polling struct {
	Sleep string `json:"sleep"`
}

// PollLinks are the actions the device should take; absent ones are nil.
type PollLinks struct {
	DeploymentBase *Link `json:"deploymentBase,omitempty"`
	CancelAction   *Link `json:"cancelAction,omitempty"`
	InstalledBase  *Link `json:"installedBase,omitempty"`
	ConfigData     *Link `json:"configData,omitempty"`
}

// Handling values of deployment.download and deployment.update.
const (
	HandlingSkip    = "skip"
	HandlingAttempt = "attempt"
	HandlingForced  = "forced"
)

// Maintenance window values.
const (
	WindowAvailable   = "available"
	WindowUnavailable = "unavailable"
)

// DeploymentBase is the answer to GET .../deploymentBase/{actionId}.
type DeploymentBase struct {
	ID            string         `json:"id"`
	Deployment    Deployment     `json:"deployment"`
	ActionHistory *ActionHistory `json:"actionHistory,omitempty"`
}

// Deployment describes what to download and install.
type Deployment struct {
	Download          string  `json:"download"`
	Update            string  `json:"update"`
	MaintenanceWindow string  `json:"maintenanceWindow,omitempty"`
	Chunks            []Chunk `json:"chunks"`
}

// Chunk is one software module.
type Chunk struct {
	Part      string     `json:"part"`
	Version   string     `json:"version"`
	Name      string     `json:"name"`
	Artifacts []Artifact `json:"artifacts"`
	// Metadata is hawkBit's optional key/value list; Flotilla sends the
	// artifact type here ("type") so SDKs can pick a fetcher.
	Metadata []KeyValue `json:"metadata,omitempty"`
}

// KeyValue is one metadata entry.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Artifact is one file of a chunk.
type Artifact struct {
	Filename string        `json:"filename"`
	Hashes   Hashes        `json:"hashes"`
	Size     int64         `json:"size"`
	Links    ArtifactLinks `json:"_links"`
}

// Hashes of an artifact, hex encoded.
type Hashes struct {
	SHA1   string `json:"sha1"`
	MD5    string `json:"md5"`
	SHA256 string `json:"sha256"`
}

// ArtifactLinks are where to fetch the bytes.
type ArtifactLinks struct {
	Download     *Link `json:"download,omitempty"`
	DownloadHTTP *Link `json:"download-http,omitempty"`
	MD5Sum       *Link `json:"md5sum,omitempty"`
	MD5SumHTTP   *Link `json:"md5sum-http,omitempty"`
}

// ActionHistory is included when the device asks for ?actionHistory=N.
type ActionHistory struct {
	Status   string   `json:"status"`
	Messages []string `json:"messages"`
}

// CancelAction is the answer to GET .../cancelAction/{actionId}.
type CancelAction struct {
	ID           string     `json:"id"`
	CancelAction CancelStop `json:"cancelAction"`
}

// CancelStop names the action to stop.
type CancelStop struct {
	StopID string `json:"stopId"`
}

// Feedback is what devices POST to .../deploymentBase/{id}/feedback and
// .../cancelAction/{id}/feedback. Old clients also send "id" and "time",
// which are accepted and ignored.
type Feedback struct {
	ID     any     `json:"id,omitempty"`
	Time   string  `json:"time,omitempty"`
	Status *Status `json:"status"`
	// Timestamp is newer hawkBit's optional event time (Unix millis).
	Timestamp int64 `json:"timestamp,omitempty"`
}

// Status is the body of a feedback.
type Status struct {
	Execution string   `json:"execution"`
	Result    *Result  `json:"result,omitempty"`
	Details   []string `json:"details,omitempty"`
	Code      *int     `json:"code,omitempty"`
}

// Result carries the outcome and progress.
type Result struct {
	Finished string    `json:"finished"`
	Progress *Progress `json:"progress,omitempty"`
}

// Progress counts steps done of a total.
type Progress struct {
	Cnt int `json:"cnt"`
	Of  int `json:"of"`
}

// Execution values of Status.
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

// Finished values of Result.
const (
	FinishedSuccess = "success"
	FinishedFailure = "failure"
	FinishedNone    = "none"
)

// ConfigData is PUT to .../configData: the device's attributes.
type ConfigData struct {
	ID     any               `json:"id,omitempty"`
	Time   string            `json:"time,omitempty"`
	Status *Status           `json:"status,omitempty"`
	Mode   string            `json:"mode,omitempty"`
	Data   map[string]string `json:"data"`
}

// Update modes of ConfigData.
const (
	ModeMerge   = "merge"
	ModeReplace = "replace"
	ModeRemove  = "remove"
)

// Attribute keys with a meaning to Flotilla beyond being shown.
const (
	// AttrVersion reports the software version the device runs.
	AttrVersion = "version"
	// AttrLabelPrefix marks attributes that set device labels, e.g.
	// "label.region" = "eu"; this is how self-registering devices join
	// channels and selectors.
	AttrLabelPrefix = "label."
)

// FormatSleep renders a duration as DDI's HH:MM:SS.
func FormatSleep(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// ParseSleep parses HH:MM:SS. Devices call it on every poll, so it does
// not go through fmt.
func ParseSleep(s string) (time.Duration, error) {
	bad := fmt.Errorf("polling sleep %q is not HH:MM:SS", s)
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return 0, bad
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || len(p) > 6 { // 999999 hours fits a Duration
			return 0, bad
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return 0, bad
			}
			n[i] = n[i]*10 + int(c-'0')
		}
	}
	if n[1] > 59 || n[2] > 59 {
		return 0, bad
	}
	return time.Duration(n[0])*time.Hour + time.Duration(n[1])*time.Minute + time.Duration(n[2])*time.Second, nil
}
