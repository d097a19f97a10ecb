// Package store declares the persistence contract of Flotilla: small
// interfaces per aggregate, composed into Store. The SQL implementation is in
// sqlstore (used by both the sqlite and postgres packages) and every
// implementation passes the conformance suite in storetest.
//
// Methods return *flotilla.Error values with code ENotFound for missing
// records and EConflict for uniqueness or in-use violations; any other error
// is an internal failure.
package store

import (
	"context"
	"strconv"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/label"
	"github.com/flotilla-ota/flotilla/rollout"
)

// Tenants stores tenants.
type Tenants interface {
	// CreateTenant inserts t; EConflict if the name is taken.
	CreateTenant(ctx context.Context, t flotilla.Tenant) error
	// GetTenant returns the tenant or ENotFound.
	GetTenant(ctx context.Context, name string) (flotilla.Tenant, error)
	ListTenants(ctx context.Context) ([]flotilla.Tenant, error)
	// SetTenantAnonymousDDI toggles anonymous device access; ENotFound.
	SetTenantAnonymousDDI(ctx context.Context, name string, on bool) error
	// SetTenantSettings replaces a tenant's settings; ENotFound.
	SetTenantSettings(ctx context.Context, name string, settings flotilla.TenantSettings) error
}

// Tokens stores API tokens by the hash of their secret.
type Tokens interface {
	// CreateToken inserts t; EConflict on a duplicate id or hash.
	CreateToken(ctx context.Context, t flotilla.Token) error
	// TokenByHash returns the token with this secret hash, or ENotFound.
	TokenByHash(ctx context.Context, hash string) (flotilla.Token, error)
	// ListTokens lists a tenant's tokens, newest first.
	ListTokens(ctx context.Context, tenant string) ([]flotilla.Token, error)
	// GetToken returns a token by id; ENotFound if the tenant has no such
	// token. An empty tenant matches any tenant.
	GetToken(ctx context.Context, tenant, id string) (flotilla.Token, error)
	// RevokeToken marks the token revoked at at; ENotFound if the tenant has
	// no such token. An empty tenant matches any tenant.
	RevokeToken(ctx context.Context, tenant, id string, at time.Time) error
	// ReinstateToken makes the token with this secret hash valid again:
	// not revoked, not expiring. ENotFound if there is none.
	ReinstateToken(ctx context.Context, hash string) error
}

// ArtifactFilter narrows ListArtifacts.
type ArtifactFilter struct {
	Name     string         // exact name, or all
	Selector label.Selector // on artifact labels
}

// Artifacts stores artifact metadata; the bytes are in a blob.Store.
type Artifacts interface {
	// CreateArtifact inserts a and sets a.ID; EConflict if (tenant, name,
	// version) exists.
	CreateArtifact(ctx context.Context, a *flotilla.Artifact) error
	// GetArtifact returns the artifact or ENotFound.
	GetArtifact(ctx context.Context, tenant, name, version string) (flotilla.Artifact, error)
	// GetArtifactByID returns the artifact or ENotFound.
	GetArtifactByID(ctx context.Context, tenant string, id int64) (flotilla.Artifact, error)
	// CountArtifacts counts a tenant's artifacts.
	CountArtifacts(ctx context.Context, tenant string) (int, error)
	// ListArtifacts returns matching artifacts ordered by name, then id.
	ListArtifacts(ctx context.Context, tenant string, f ArtifactFilter) ([]flotilla.Artifact, error)
	// UpdateArtifact applies p and returns the result; ENotFound.
	UpdateArtifact(ctx context.Context, tenant, name, version string, p flotilla.ArtifactPatch) (flotilla.Artifact, error)
	// DeleteArtifact removes the metadata; ENotFound, or EConflict while an
	// active deployment or rollout uses it. orphan reports whether no
	// artifact of any tenant still references the blob.
	DeleteArtifact(ctx context.Context, tenant, name, version string) (deleted flotilla.Artifact, orphan bool, err error)
	// BlobReferenced reports whether any artifact or module file uses the
	// blob.
	BlobReferenced(ctx context.Context, sha256 string) (bool, error)
}

// Modules stores software modules, their files, and which releases they
// make up. A single-file artifact is stored with one module holding its
// file (CreateArtifact makes both).
type Modules interface {
	// CreateModule inserts m (without files) and sets m.ID; EConflict if
	// (tenant, name, version, type) exists.
	CreateModule(ctx context.Context, m *flotilla.Module) error
	// GetModule returns a module with its files, or ENotFound.
	GetModule(ctx context.Context, tenant string, id int64) (flotilla.Module, error)
	// ListModules returns matching modules with their files, by id.
	ListModules(ctx context.Context, tenant string, f flotilla.ModuleFilter) ([]flotilla.Module, error)
	// DeleteModule removes a module and its files; EConflict while a
	// release includes it. orphans lists blobs nothing references now.
	DeleteModule(ctx context.Context, tenant string, id int64) (orphans []string, err error)
	// AddModuleFile stores f (ModuleID set) and sets f.ID; EConflict if
	// the module has a file of that name, or is part of a release (its
	// contents are fixed then).
	AddModuleFile(ctx context.Context, tenant string, f *flotilla.File) error
	// DeleteModuleFile removes a file; EConflict while the module is part
	// of a release. orphan: no artifact or file uses the blob any more.
	DeleteModuleFile(ctx context.Context, tenant string, moduleID, fileID int64) (deleted flotilla.File, orphan bool, err error)
	// CreateRelease inserts a release made of modules (in install order)
	// and sets a.ID; EConflict if (tenant, name, version) exists,
	// ENotFound for a module the tenant does not have.
	CreateRelease(ctx context.Context, a *flotilla.Artifact, moduleIDs []int64) error
	// ReleaseModules returns a release's modules with their files, in
	// install order.
	ReleaseModules(ctx context.Context, tenant string, artifactID int64) ([]flotilla.Module, error)
	// ModuleReleases lists the ids of the releases that include a module.
	ModuleReleases(ctx context.Context, tenant string, moduleID int64) ([]int64, error)
	// ModuleAssigned reports whether the device ever had a deployment of a
	// release that includes the module.
	ModuleAssigned(ctx context.Context, tenant, deviceID string, moduleID int64) (bool, error)
	// AssignedModuleFile is a download's one read: the module (without
	// its files) and its file of that name, if the device ever had a
	// deployment of a release that includes the module; ENotFound if not.
	AssignedModuleFile(ctx context.Context, tenant, deviceID string, moduleID int64, filename string) (flotilla.Module, flotilla.File, error)
}

// DeviceQuery selects devices a page at a time, in Sort order (id by
// default).
type DeviceQuery struct {
	Selector label.Selector
	// Prefix keeps devices whose id starts with it.
	Prefix string
	// Sort orders the page; Desc reverses it.
	Sort DeviceSort
	Desc bool
	// AfterID, with AfterValue for sorts other than id, is the exclusive
	// cursor: the last device of the previous page.
	AfterID    string
	AfterValue string
	Limit      int // 0 means no limit
}

// DeviceSort is a device list order; ties are broken by id.
type DeviceSort string

// The device list orders.
const (
	SortByID       DeviceSort = ""
	SortByLastSeen DeviceSort = "last_seen"
	SortByVersion  DeviceSort = "version"
)

// CursorValue is d's value for sort, as DeviceQuery.AfterValue takes it:
// the last sighting in Unix microseconds (0 for never), or the version.
func CursorValue(d flotilla.Device, sort DeviceSort) string {
	switch sort {
	case SortByLastSeen:
		if d.LastSeenAt == nil {
			return "0"
		}
		return strconv.FormatInt(d.LastSeenAt.UnixMicro(), 10)
	case SortByVersion:
		return d.Version
	}
	return ""
}

// Devices stores the fleet.
type Devices interface {
	// CreateDevice inserts d; EConflict if the id exists in the tenant.
	CreateDevice(ctx context.Context, d flotilla.Device) error
	// CreateDevices inserts many devices in one transaction: all or none
	// (EConflict naming a device whose id exists).
	CreateDevices(ctx context.Context, ds []flotilla.Device) error
	// GetDevice returns the device or ENotFound.
	GetDevice(ctx context.Context, tenant, id string) (flotilla.Device, error)
	// DeviceTokenHash returns the hash of the device's DDI token ("" when
	// it has none) or ENotFound: what a poll's authentication reads.
	DeviceTokenHash(ctx context.Context, tenant, id string) (string, error)
	// DeviceByTokenHash returns the device whose DDI token has this hash,
	// in any tenant, or ENotFound.
	DeviceByTokenHash(ctx context.Context, hash string) (flotilla.Device, error)
	// ListDevices returns a page of devices matching q, in q's order.
	ListDevices(ctx context.Context, tenant string, q DeviceQuery) ([]flotilla.Device, error)
	// LatestDeployments returns, for each of the given devices that has
	// any, its newest deployment (no history).
	LatestDeployments(ctx context.Context, tenant string, deviceIDs []string) (map[string]flotilla.Deployment, error)
	// CountDevices counts the tenant's devices matching sel.
	CountDevices(ctx context.Context, tenant string, sel label.Selector) (int, error)
	// UpdateDevice applies p at now and returns the result; ENotFound.
	UpdateDevice(ctx context.Context, tenant, id string, p flotilla.DevicePatch, now time.Time) (flotilla.Device, error)
	// EditDevice applies at now the patch edit returns (nil: no write) for the device as the write
	// reads it, and whether its attributes are requested; edit may run more than once. ENotFound.
	EditDevice(ctx context.Context, tenant, id string, now time.Time, edit func(d flotilla.Device, attrsRequested bool) (*flotilla.DevicePatch, error)) (before, after flotilla.Device, err error)
	// DeleteDevice removes the device and its history; ENotFound.
	DeleteDevice(ctx context.Context, tenant, id string) error
	// TouchDevices records when devices were last seen, in one write. For
	// entries with Check set it returns those whose previous sighting was
	// missing or before offlineBefore: devices that came online.
	TouchDevices(ctx context.Context, seen []DeviceSeen, offlineBefore time.Time) ([]DeviceSeen, error)
	// FleetSummary counts a tenant's devices: in all, seen since
	// onlineSince, never seen, and by reported version.
	FleetSummary(ctx context.Context, tenant string, onlineSince time.Time) (flotilla.FleetSummary, error)
	// DevicesLastSeenBetween lists devices last seen in [from, to): those
	// that went offline when to is now minus the offline threshold.
	DevicesLastSeenBetween(ctx context.Context, from, to time.Time) ([]DeviceSeen, error)
}

// DeviceSeen is one entry for TouchDevices.
type DeviceSeen struct {
	Tenant string
	ID     string
	At     time.Time
	Check  bool
}

// Superseded is a deployment that a new assignment canceled or asked to
// cancel.
type Superseded struct {
	ID        int64
	DeviceID  string
	RolloutID string
	State     flotilla.DeploymentState // the state it moved to
}

// Deployments stores deployments and their history.
type Deployments interface {
	// CreateDeployment inserts d (setting its ID) with a first history
	// entry. Other open deployments of the device are superseded in the
	// same transaction, each as flotilla.CancelOutcome says (canceled, or
	// cancel_requested for the device to confirm). ENotFound if the device
	// does not exist.
	CreateDeployment(ctx context.Context, d *flotilla.Deployment, ev flotilla.DeploymentEvent) ([]Superseded, error)
	// GetDeployment returns a deployment of the tenant with its history.
	GetDeployment(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error)
	// GetDeploymentBrief is GetDeployment without the history, which a
	// device's fetch of its deployment does not need unless it asks.
	GetDeploymentBrief(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error)
	// ListDeviceDeployments returns a device's deployments newest first,
	// each with its history.
	ListDeviceDeployments(ctx context.Context, tenant, deviceID string, limit int) ([]flotilla.Deployment, error)
	// DeviceActions returns the device's open deployments (oldest first)
	// and its last succeeded deployment, if any; no history.
	DeviceActions(ctx context.Context, tenant, deviceID string) (open []flotilla.Deployment, installed *flotilla.Deployment, err error)
	// DevicePoll is DeviceActions and AttributesRequested in one read.
	DevicePoll(ctx context.Context, tenant, deviceID string) (DevicePoll, error)
	// UpdateDeployment reads the deployment and applies fn's change in one
	// transaction: the deployment's new fields and, if set, the history
	// entry. When the change says Installed, the device's version becomes
	// DeviceVersion and the device is asked for its attributes (DDI
	// configData), in the same transaction. fn sees the current row
	// (without history) and may return an error to abort; it may run more
	// than once. ENotFound if the tenant has no such deployment for
	// deviceID (any device when deviceID is "").
	UpdateDeployment(ctx context.Context, tenant, deviceID string, id int64, fn func(d flotilla.Deployment) (flotilla.Change, error)) (flotilla.Deployment, error)
	// DeploymentByUpdateID finds a device's push deployment by the
	// caller's update id, or ENotFound.
	DeploymentByUpdateID(ctx context.Context, tenant, deviceID, updateID string) (flotilla.Deployment, error)
	// ClaimPushDeployments leases up to limit open push deployments to
	// owner until until (renewing owner's own) and returns them. A claimed
	// deployment without an update id gets newID() in the same
	// transaction: recorded before any node hears of it.
	ClaimPushDeployments(ctx context.Context, owner string, now, until time.Time, limit int, exclude []int64, newID func() string) ([]flotilla.Deployment, error)
	// RenewPushClaims extends owner's leases on ids.
	RenewPushClaims(ctx context.Context, owner string, ids []int64, until time.Time) error
	// ReleasePushClaim gives up owner's lease on a deployment.
	ReleasePushClaim(ctx context.Context, id int64, owner string) error
	// OpenWindowedDeployments returns open direct assignments that have a
	// maintenance window (rollouts handle their own).
	OpenWindowedDeployments(ctx context.Context) ([]flotilla.Deployment, error)
	// ArtifactAssigned reports whether the device has a deployment of the
	// artifact, which is what allows it to download the artifact.
	ArtifactAssigned(ctx context.Context, tenant, deviceID string, artifactID int64) (bool, error)
	// SetAttributesRequested sets whether the device should upload its
	// attributes at its next poll.
	SetAttributesRequested(ctx context.Context, tenant, deviceID string, on bool) error
	// AttributesRequested reads that flag.
	AttributesRequested(ctx context.Context, tenant, deviceID string) (bool, error)
}

// Policies stores reusable rollout policies.
type Policies interface {
	// PutPolicy creates or replaces a policy; created reports which.
	PutPolicy(ctx context.Context, p flotilla.NamedPolicy) (created bool, err error)
	// GetPolicy returns a policy or ENotFound.
	GetPolicy(ctx context.Context, tenant, name string) (flotilla.NamedPolicy, error)
	ListPolicies(ctx context.Context, tenant string) ([]flotilla.NamedPolicy, error)
	// DeletePolicy removes a policy; ENotFound.
	DeletePolicy(ctx context.Context, tenant, name string) error
}

// RolloutFinish is when a device of a rollout finished, and how.
type RolloutFinish struct {
	At    time.Time
	State flotilla.DeploymentState
}

// Touched is a deployment a rollout operation changed, for cache
// invalidation and events.
type Touched struct {
	ID       int64
	DeviceID string
	Wave     int
	State    flotilla.DeploymentState
	// What a device is told of the deployment once it is its action, set
	// by a release (scheduled → pending): a cached poll answer can then
	// name it without reading the device.
	Type     flotilla.DeploymentType
	ForceAt  *time.Time
	Window   *flotilla.MaintenanceWindow
	Delivery string
}

// Rollouts stores rollouts, their waves, device snapshots and runs.
// Operations that change a running rollout take the version they read and
// fail with EConflict if another writer got there first.
type Rollouts interface {
	// CreateRollout inserts r (status draft or creating).
	CreateRollout(ctx context.Context, r *flotilla.Rollout) error
	// GetRollout returns the rollout and its waves with counts.
	GetRollout(ctx context.Context, tenant, id string) (flotilla.Rollout, []flotilla.Wave, error)
	ListRollouts(ctx context.Context, tenant string, f flotilla.RolloutFilter) ([]flotilla.Rollout, error)
	// PromoteDraft turns a draft into a creating rollout (start: start it
	// when ready); EConflict if it is not a draft.
	PromoteDraft(ctx context.Context, tenant, id string, start bool, now time.Time) error
	// DeleteRollout removes a rollout that is not running or paused.
	DeleteRollout(ctx context.Context, tenant, id string) error
	// RolloutMembers returns the ids and labels of the tenant's devices
	// matching the selector, in id order: the snapshot a rollout takes.
	RolloutMembers(ctx context.Context, tenant string, selector string) ([]rollout.Member, error)
	// MaterializeRollout stores the snapshot (each member's wave) and the
	// waves, and moves the rollout from creating to ready.
	MaterializeRollout(ctx context.Context, id string, members []string, assign []int, waves []flotilla.Wave, now time.Time) error
	// MaterializeEvenRollout does what RolloutMembers, rollout.Split into n
	// even waves and MaterializeRollout do, inside the database: a million
	// members are never read out. It returns false, having changed nothing,
	// where it cannot (a selector the label-set index does not decide, or
	// devices added or removed while it counted them).
	MaterializeEvenRollout(ctx context.Context, id string, n int, now time.Time) (bool, error)
	// StartRollout creates a scheduled deployment for every device of a
	// ready rollout, superseding the devices' open deployments, and sets it
	// running. It returns the superseded deployments. A large rollout may
	// write only its first wave's deployments and mark the other waves
	// Unwritten: WriteNextWave writes them, and starting a wave writes it.
	// A member superseded before its wave is written is written canceled.
	StartRollout(ctx context.Context, tenant, id string, now time.Time) ([]Superseded, error)
	// WriteNextWave writes the deployments of a running or paused
	// rollout's first unwritten wave, and reports whether more remain.
	WriteNextWave(ctx context.Context, id string, now time.Time) (more bool, err error)
	// ClaimRollouts leases up to limit rollouts that need the scheduler
	// (creating, running, paused) to owner until until, renewing owner's
	// own leases; it returns their ids.
	ClaimRollouts(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error)
	// ReleaseRollout gives up owner's lease.
	ReleaseRollout(ctx context.Context, id, owner string) error
	// RolloutSnapshot loads what the planner needs: the rollout, its waves
	// with their counts, and the open deployments of the waves that
	// started (in flight only when rollout.NeedsInFlight); read says what
	// else.
	RolloutSnapshot(ctx context.Context, id string, now time.Time, read SnapshotReads) (rollout.Snapshot, error)
	// ApplyRolloutPlan applies actions — a plan of the scheduler's or an
	// operator's (rollout.Operate) — in one transaction, if the rollout is
	// at version and, for the scheduler (owner not ""), owner still holds
	// its lease; otherwise EConflict and nothing changes. Each action does
	// exactly what its rollout.ActionKind documents.
	ApplyRolloutPlan(ctx context.Context, id, owner string, version int64, actions []rollout.Action, now time.Time) ([]Touched, error)
	ListRolloutDevices(ctx context.Context, tenant, id string, f flotilla.RolloutDeviceFilter) ([]flotilla.RolloutDevice, error)
	ListRolloutRuns(ctx context.Context, tenant, id string) ([]flotilla.RolloutRun, error)
	// RolloutFinishes returns when each of a rollout's devices finished
	// (its current attempt) and how, oldest first: its recorded history.
	RolloutFinishes(ctx context.Context, tenant, id string) ([]RolloutFinish, error)
	// RolloutNumber returns the rollout's number (hawkBit's integer id),
	// giving it one the first time; ENotFound for an unknown rollout.
	RolloutNumber(ctx context.Context, tenant, id string) (int64, error)
	// RolloutByNumber returns the id of the tenant's rollout with that
	// number, or ENotFound.
	RolloutByNumber(ctx context.Context, tenant string, num int64) (string, error)
	// SetRolloutFilter records the hawkBit target filter query and
	// description a rollout was made with (numbering it if need be).
	SetRolloutFilter(ctx context.Context, tenant, id, filter, description string) error
	// RolloutFilter returns them ("" when none).
	RolloutFilter(ctx context.Context, tenant, id string) (filter, description string, err error)
}

// Channels stores release channels.
type Channels interface {
	// PutChannel creates or replaces a channel; created reports which.
	PutChannel(ctx context.Context, c flotilla.Channel) (created bool, err error)
	GetChannel(ctx context.Context, tenant, name string) (flotilla.Channel, error)
	ListChannels(ctx context.Context, tenant string) ([]flotilla.Channel, error)
	DeleteChannel(ctx context.Context, tenant, name string) error
}

// Settings stores installation-wide values: which secret key sealed the
// secrets, which one-time conversions ran.
type Settings interface {
	// Setting returns a value, or ENotFound.
	Setting(ctx context.Context, name string) (string, error)
	// PutSetting sets a value.
	PutSetting(ctx context.Context, name, value string) error
	// InitSetting sets name to value unless it has a value already, and
	// returns the value it has afterwards.
	InitSetting(ctx context.Context, name, value string) (string, error)
}

// What a DMF outbox message is, besides a deployment state written by
// the triggers: the device was deleted; its open actions are owed again
// whatever it was told (a thing that reconnected); or owed unless it was
// told them already (a thing that registered a moment ago).
const (
	DMFDeleted = "deleted"
	DMFResend  = "resend"
	DMFOwed    = "owed"
)

// DMFMessage is a message owed to a DMF device: for an open deployment (its
// state when the change was made), or DMFDeleted when the device went.
type DMFMessage struct {
	ID           int64
	Tenant       string
	DeviceID     string
	DeploymentID int64 // 0 for a deleted device
	State        string
	// Exchange and Link address a deleted device (for the others they
	// are read from the device).
	Exchange, Link string
	CreatedAt      time.Time
}

// DMF stores what hawkBit's Device Management Federation API needs: which
// devices are DMF devices, and the outbox of messages owed to them. The
// outbox is filled by the same transactions that change deployments (and
// delete devices), so no message is lost to a crash after a commit.
type DMF interface {
	// SetDeviceDMF marks a device as reached over DMF on link, answered on
	// exchange; ENotFound.
	SetDeviceDMF(ctx context.Context, tenant, id, link, exchange string) error
	// EnqueueDMF adds a message to the outbox.
	EnqueueDMF(ctx context.Context, m DMFMessage) error
	// ClaimDMF leases up to limit unclaimed (or expired) outbox messages
	// of devices on link, oldest first, to owner until until.
	ClaimDMF(ctx context.Context, owner, link string, now, until time.Time, limit int) ([]DMFMessage, error)
	// DoneDMF removes a published message, recording what was sent for its
	// deployment.
	DoneDMF(ctx context.Context, id, deploymentID int64, topic string, now time.Time) error
	// LastDMF is the topic last sent for a deployment ("" if none).
	LastDMF(ctx context.Context, deploymentID int64) (string, error)
	// OpenDMFWindows lists the pending deployments of DMF devices that
	// have a maintenance window.
	OpenDMFWindows(ctx context.Context) ([]flotilla.Deployment, error)
}

// Store is everything Flotilla persists.
type Store interface {
	Settings
	Trust
	DMF
	Tenants
	Tokens
	Artifacts
	Modules
	Devices
	Deployments
	Policies
	Rollouts
	Channels
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	Close() error
}

// SnapshotReads is what a rollout snapshot reads beyond what every plan
// needs.
type SnapshotReads struct {
	// Failed: the latest attempts that failed, timed out, were rejected or
	// skipped (Snapshot.Failed), which an operator's retry needs.
	Failed bool
	// NextWave: the scheduled devices of the first wave that has not
	// started, which a plan that starts it releases. The scheduler asks
	// for them only when a plan without them starts that wave: while a
	// wave runs, the next one's devices (a third of a fleet) would be read
	// after every change for nothing.
	NextWave bool
}
