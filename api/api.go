// Package api holds the JSON types of Flotilla's management API v1
// (/api/v1): what the server answers and accepts. The server, the flotilla
// CLI and Go programs that call the API share them, so a field cannot drift
// between them; the field tags are the wire format. Errors are
// {"error": {"code", "message"}} (Error).
package api

import (
	"encoding/json"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/push"
)

// List is the shape of every list.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
	Total      *int   `json:"total,omitempty"`
}

// Tenant is a tenant.
type Tenant struct {
	Name         string                  `json:"name"`
	AnonymousDDI bool                    `json:"anonymous_ddi"`
	Settings     flotilla.TenantSettings `json:"settings"`
	CreatedAt    time.Time               `json:"created_at"`
}

// Token is an API token; Token holds its secret only in the answer that created it.
type Token struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Token is the secret, present only in the creation response.
	Token string `json:"token,omitempty"`
}

// Artifact is an artifact in the registry.
type Artifact struct {
	ID          int64             `json:"id"`
	Tenant      string            `json:"tenant"`
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Filename    string            `json:"filename"`
	Type        string            `json:"type"`
	Labels      map[string]string `json:"labels"`
	Description string            `json:"description"`
	Size        int64             `json:"size"`
	SHA256      string            `json:"sha256"`
	SHA1        string            `json:"sha1"`
	MD5         string            `json:"md5"`
	CreatedAt   time.Time         `json:"created_at"`
	ContentURL  string            `json:"content_url,omitempty"`
	// Modules are the release's software modules in install order (a
	// single-file artifact has one, holding its file).
	Modules []Module `json:"modules,omitempty"`
}

// Module is a software module: one part of a release, with its files.
type Module struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Type        string    `json:"type"`
	Vendor      string    `json:"vendor,omitempty"`
	Description string    `json:"description,omitempty"`
	Files       []File    `json:"files"`
	CreatedAt   time.Time `json:"created_at"`
}

// File is one file of a module.
type File struct {
	ID       int64  `json:"id"`
	Filename string `json:"filename"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	SHA1     string `json:"sha1"`
	MD5      string `json:"md5"`
}

// NewModule is POST /api/v1/modules.
type NewModule struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Type        string `json:"type"`
	Vendor      string `json:"vendor,omitempty"`
	Description string `json:"description,omitempty"`
}

// NewRelease is POST /api/v1/releases: a release made of modules, in
// install order.
type NewRelease struct {
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Type        string            `json:"type,omitempty"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Modules     []int64           `json:"modules"`
}

// ArtifactRef is names an artifact version.
type ArtifactRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// DeviceDMF is how a DMF device is reached: the AMQP connection it
// registered on and the exchange its messages go to.
type DeviceDMF struct {
	Link     string `json:"link"`
	Exchange string `json:"exchange"`
}

// Device is a device of the fleet.
type Device struct {
	ID         string            `json:"id"`
	Tenant     string            `json:"tenant"`
	Labels     map[string]string `json:"labels"`
	Attributes map[string]string `json:"attributes"`
	Version    string            `json:"version"`
	Address    string            `json:"address,omitempty"`
	// DMF is set for a device reached over hawkBit's DMF API (AMQP).
	DMF        *DeviceDMF `json:"dmf,omitempty"`
	Status     string     `json:"status"`
	LastSeenAt *time.Time `json:"last_seen_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	// Token is the DDI credential (TargetToken): in the answer that
	// created or rotated it, and to holders of the devices:tokens scope.
	Token string `json:"token,omitempty"`
	// Deployment is the device's newest deployment, in lists.
	Deployment *DeviceDeployment `json:"deployment,omitempty"`
	// NodeToken is the bearer token the server sends this push node: in
	// the answer that created it (a device registered with, or first
	// given, an address) or rotated it; never again.
	NodeToken string `json:"node_token,omitempty"`
}

// Progress is how far a device got: Cnt of Of.
type Progress struct {
	Cnt int `json:"cnt"`
	Of  int `json:"of"`
}

// HistoryEntry is one entry of a deployment's history.
type HistoryEntry struct {
	At        time.Time                `json:"at"`
	State     flotilla.DeploymentState `json:"state"`
	Execution string                   `json:"execution,omitempty"`
	Finished  string                   `json:"finished,omitempty"`
	Progress  *Progress                `json:"progress,omitempty"`
	Code      *int                     `json:"code,omitempty"`
	Details   []string                 `json:"details,omitempty"`
	Source    string                   `json:"source"`
}

// Deployment is an artifact assigned to a device, with its history.
type Deployment struct {
	ID                int64                       `json:"id"`
	DeviceID          string                      `json:"device_id"`
	Artifact          ArtifactRef                 `json:"artifact"`
	Type              flotilla.DeploymentType     `json:"type"`
	State             flotilla.DeploymentState    `json:"state"`
	Delivery          string                      `json:"delivery"`
	UpdateID          string                      `json:"update_id,omitempty"`
	RolloutID         string                      `json:"rollout_id,omitempty"`
	Wave              *int                        `json:"wave,omitempty"`
	Attempt           int                         `json:"attempt"`
	Progress          Progress                    `json:"progress"`
	Healthy           *bool                       `json:"healthy,omitempty"`
	Message           string                      `json:"message,omitempty"`
	ForceAt           *time.Time                  `json:"force_at,omitempty"`
	MaintenanceWindow *flotilla.MaintenanceWindow `json:"maintenance_window,omitempty"`
	CreatedAt         time.Time                   `json:"created_at"`
	UpdatedAt         time.Time                   `json:"updated_at"`
	StartedAt         *time.Time                  `json:"started_at,omitempty"`
	RetrievedAt       *time.Time                  `json:"retrieved_at,omitempty"`
	FinishedAt        *time.Time                  `json:"finished_at,omitempty"`
	History           []HistoryEntry              `json:"history"`
}

// PushUpdate is a push delivery under its caller-chosen id, with the node's own status.
type PushUpdate struct {
	ID            string                   `json:"id"`
	DeploymentID  int64                    `json:"deployment_id"`
	State         flotilla.DeploymentState `json:"state"`
	Artifact      ArtifactRef              `json:"artifact"`
	Message       string                   `json:"message,omitempty"`
	Node          *push.Status             `json:"node,omitempty"`
	NodeReachable bool                     `json:"node_reachable"`
}

// RolloutRequest is the body of POST /rollouts; waves is a number of even
// waves, groups an explicit list.
type RolloutRequest struct {
	Tenant            string                      `json:"tenant"`
	Name              string                      `json:"name"`
	Artifact          ArtifactRef                 `json:"artifact"`
	Selector          string                      `json:"selector"`
	Waves             int                         `json:"waves"`
	Groups            []flotilla.WaveSpec         `json:"groups"`
	Type              string                      `json:"type"`
	ForceAt           *time.Time                  `json:"force_at"`
	Policy            *flotilla.Policy            `json:"policy"`
	PolicyName        string                      `json:"policy_name"`
	MaintenanceWindow *flotilla.MaintenanceWindow `json:"maintenance_window"`
	Delivery          string                      `json:"delivery"`
	Draft             bool                        `json:"draft"`
	Start             bool                        `json:"start"`
	Devices           []string                    `json:"devices"`
	// AllowEmpty creates the rollout even if the selector matches no
	// device now (409 otherwise).
	AllowEmpty bool `json:"allow_empty"`
}

// Wave is one wave of a rollout with counts by device state. The counts
// of a rollout of 10,000 devices or more may be up to a second old.
type Wave struct {
	Index      int                 `json:"index"`
	Name       string              `json:"name"`
	Size       int                 `json:"size"`
	Status     flotilla.WaveStatus `json:"status"`
	Counts     map[string]int      `json:"counts"`
	Unhealthy  int                 `json:"unhealthy,omitempty"`
	Waiting    int                 `json:"waiting,omitempty"`
	StartedAt  *time.Time          `json:"started_at,omitempty"`
	SuccessAt  *time.Time          `json:"success_at,omitempty"`
	FinishedAt *time.Time          `json:"finished_at,omitempty"`
	ErrorAck   bool                `json:"error_acknowledged,omitempty"`
	Reason     string              `json:"reason,omitempty"`
}

// Rollout is a rollout with its waves.
type Rollout struct {
	ID                string                      `json:"id"`
	Tenant            string                      `json:"tenant"`
	Name              string                      `json:"name"`
	Artifact          ArtifactRef                 `json:"artifact"`
	Selector          string                      `json:"selector"`
	Type              flotilla.DeploymentType     `json:"type"`
	ForceAt           *time.Time                  `json:"force_at,omitempty"`
	MaintenanceWindow *flotilla.MaintenanceWindow `json:"maintenance_window,omitempty"`
	Policy            flotilla.Policy             `json:"policy"`
	PolicyName        string                      `json:"policy_name,omitempty"`
	Delivery          string                      `json:"delivery"`
	Channel           string                      `json:"channel,omitempty"`
	Groups            []flotilla.WaveSpec         `json:"groups,omitempty"`
	Devices           []string                    `json:"devices,omitempty"`
	Status            flotilla.RolloutStatus      `json:"status"`
	Reason            string                      `json:"reason,omitempty"`
	Total             int                         `json:"total"`
	Counts            map[string]int              `json:"counts"`
	CreatedAt         time.Time                   `json:"created_at"`
	UpdatedAt         time.Time                   `json:"updated_at"`
	StartedAt         *time.Time                  `json:"started_at,omitempty"`
	FinishedAt        *time.Time                  `json:"finished_at,omitempty"`
	Waves             []Wave                      `json:"waves,omitempty"`
}

// Policy is a named rollout policy.
type Policy struct {
	Name      string          `json:"name"`
	Policy    flotilla.Policy `json:"policy"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Channel is a release channel.
type Channel struct {
	Name       string          `json:"name"`
	Artifact   ArtifactRef     `json:"artifact"`
	Selector   string          `json:"selector"`
	Policy     flotilla.Policy `json:"policy"`
	PolicyName string          `json:"policy_name,omitempty"`
	Waves      int             `json:"waves"`
	RolloutID  string          `json:"rollout_id,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	// Rollout is the rollout this request started, if any.
	Rollout *Rollout `json:"rollout,omitempty"`
}

// RolloutRun is one run of a wave and why it ended.
type RolloutRun struct {
	ID        int64          `json:"id"`
	Wave      int            `json:"wave"`
	StartedAt time.Time      `json:"started_at"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	Counts    map[string]int `json:"counts"`
	Reason    string         `json:"reason,omitempty"`
}

// RolloutDevice is one device of a rollout with its current attempt.
type RolloutDevice struct {
	DeviceID     string                   `json:"device_id"`
	Wave         int                      `json:"wave"`
	DeploymentID int64                    `json:"deployment_id,omitempty"`
	State        flotilla.DeploymentState `json:"state"`
	Attempt      int                      `json:"attempt,omitempty"`
	Healthy      *bool                    `json:"healthy,omitempty"`
	Message      string                   `json:"message,omitempty"`
	UpdatedAt    *time.Time               `json:"updated_at,omitempty"`
}

// Preview is what a rollout would cover: POST /api/v1/rollouts/preview.
type Preview struct {
	Total int           `json:"total"`
	Waves []PreviewWave `json:"waves"`
	// Warnings say what would surprise: empty waves, no device at all.
	Warnings []string `json:"warnings,omitempty"`
}

// PreviewWave is one wave of a preview with up to ten of its devices.
type PreviewWave struct {
	Index  int      `json:"index"`
	Name   string   `json:"name"`
	Size   int      `json:"size"`
	Sample []string `json:"sample"`
}

// Error is the body of every error answer.
type Error struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Info is GET /api/v1/info: what the server is and how its devices poll.
type Info struct {
	Version      string            `json:"version"`
	PollInterval flotilla.Duration `json:"poll_interval"`
	OfflineAfter flotilla.Duration `json:"offline_after"`
	// Tenant is the calling token's own tenant.
	Tenant string `json:"tenant"`
}

// DeviceDeployment is a device's newest deployment as a list shows it.
type DeviceDeployment struct {
	ID        int64                    `json:"id"`
	State     flotilla.DeploymentState `json:"state"`
	Artifact  ArtifactRef              `json:"artifact"`
	RolloutID string                   `json:"rollout_id,omitempty"`
	Message   string                   `json:"message,omitempty"`
	UpdatedAt time.Time                `json:"updated_at"`
}

// RolloutHistory is a rollout's progress over time, from its start:
// GET /api/v1/rollouts/{id}/history.
type RolloutHistory struct {
	Total      int            `json:"total"`
	StartedAt  *time.Time     `json:"started_at,omitempty"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	Points     []HistoryPoint `json:"points"`
}

// HistoryPoint is how many devices had finished, succeeded and failed by
// At.
type HistoryPoint struct {
	At        time.Time `json:"at"`
	Finished  int       `json:"finished"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
}

// TrustStatus is GET /api/v1/trust: the tenant's TUF repository.
type TrustStatus struct {
	// Signed is true once the tenant has a root: only signed releases can
	// then be assigned, rolled out or pushed.
	Signed bool `json:"signed"`
	// OnlineKeys are the server's snapshot and timestamp keys (TUF key
	// objects) that a root must name.
	OnlineKeys map[string]json.RawMessage `json:"online_keys"`
	// Versions and Expires of the roles present.
	Versions map[string]int64     `json:"versions"`
	Expires  map[string]time.Time `json:"expires"`
	// Releases is how many releases the targets metadata signs.
	Releases int `json:"releases"`
	// MetadataURL is where devices fetch the metadata.
	MetadataURL string `json:"metadata_url"`
}

// TrustMetadata is POST /api/v1/trust/metadata: metadata signed offline.
// A rotated targets key needs both in one request.
type TrustMetadata struct {
	Root    json.RawMessage `json:"root,omitempty"`
	Targets json.RawMessage `json:"targets,omitempty"`
}
