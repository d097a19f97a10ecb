// Package core is Flotilla's application layer: the operations a management
// API call, a DDI request or the scheduler performs, each validated,
// authorized and carried out against the store, the blob store and the
// event hub. The HTTP packages only translate between wire formats and
// these calls, so the device and management protocols stay consistent.
package core

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/blob"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/secret"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
)

// Config tunes the core.
type Config struct {
	// MaxArtifactSize bounds uploads; default 4 GiB.
	MaxArtifactSize int64
	// PollInterval is the DDI polling sleep devices are told; default 5m.
	PollInterval time.Duration
	// OfflineAfter marks a device offline when not seen for that long;
	// default 2*PollInterval + 1m.
	OfflineAfter time.Duration
	// Quotas bound what tenants, devices and deployments may store.
	Quotas Quotas
	// HoldFeedback is how long a device's intermediate feedback may wait
	// in memory to be written with its next report (held.go); 0 writes
	// every report at once. A server runs RunHeldFlusher with it.
	HoldFeedback time.Duration
	// Secrets seals the credentials the server reads back (device and
	// node tokens). Default: a random key that lives as long as the
	// process, for tests; a server passes the key it keeps.
	Secrets *secret.Box
}

// Signatures is a tenant's signed-release policy (package tufrepo).
type Signatures interface {
	// CheckRelease refuses (EConflict) a release a signed tenant has not
	// signed.
	CheckRelease(ctx context.Context, tenant string, a flotilla.Artifact) error
	// SignedSize is the signed length and sha256 of a signed release.
	SignedSize(ctx context.Context, tenant string, a flotilla.Artifact) (size int64, sha256 string, ok bool)
	// Capability is a short-lived credential for reading the tenant's
	// repository, for push nodes.
	Capability(tenant string, ttl time.Duration) string
	// CheckCapability reports whether tok is a live capability for tenant.
	CheckCapability(tenant, tok string) bool
	// Status, Publish and File are the operator's view of the repository.
	Status(ctx context.Context, tenant string) (tufrepo.Status, error)
	Publish(ctx context.Context, tenant string, root, targets []byte) error
	File(ctx context.Context, tenant, name string) ([]byte, error)
}

// Core holds the dependencies every operation needs.
type Core struct {
	Store  store.Store
	Blobs  blob.Store
	Events events.Publisher
	Log    *slog.Logger
	Now    func() time.Time
	Config Config
	// Signatures, if set, enforces signed releases where a tenant
	// adopted them.
	Signatures Signatures

	locks      keyedMutex
	deviceAuth deviceAuth
	hooks      Hooks
	progressMu sync.Mutex
	progress   map[string]progressEntry
	seen       seenBatch
	channels   channelCache
	quota      quotaState
	tenants    tenantCache
	held       heldFeedback
	releases   releaseCache
}

// Hooks are how the rest of a running server reacts to what the core
// changed. internal/server sets them, in one place, before serving; each
// must return at once (queue work, never wait for it). A nil hook is
// skipped.
type Hooks struct {
	// DeploymentChanged runs after every committed deployment change.
	DeploymentChanged func(flotilla.Deployment)
	// Invalidate runs when what a device should be told changed: its
	// cached poll answer must be recomputed. deviceID "" means every
	// device of the tenant.
	Invalidate func(tenant, deviceID string)
	// AttributesAnswered runs when a device's upload answered the server's
	// request for its attributes, and nothing else about its answer
	// changed: a cached answer may drop its configData link instead of
	// being recomputed. Unset, Invalidate runs.
	AttributesAnswered func(tenant, deviceID string)
	// ActionEnded runs when d, a device's pull deployment, just ended by
	// its own change, and nothing else about the device's answer changed
	// but what an end does: the deployment's link goes, and a success is
	// the installed base and asks for the attributes. A cached answer whose
	// action d was, with nothing else waiting (DeviceView.ActionAlone), may
	// be rewritten so instead of recomputed. Unset, Invalidate runs.
	ActionEnded func(d flotilla.Deployment)
	// ActionStarted runs when a rollout released d, a pull deployment
	// that waited for its wave (scheduled → pending), with began a moment
	// before the release was written, on the process's clock. A waiting
	// deployment changes nothing a device is told, so a cached answer
	// without an action read before began may name d as its action instead
	// of being recomputed. Unset, Invalidate runs.
	ActionStarted func(d flotilla.Deployment, began time.Time)
	// WakeRollout runs when a rollout needs the scheduler now.
	WakeRollout func(id string)
	// ForgetAuth runs when device credentials may have changed (a token
	// revoked, a device deleted, a tenant setting changed).
	ForgetAuth func()
}

// SetHooks installs the hooks; call it once, before serving.
func (c *Core) SetHooks(h Hooks) { c.hooks = h }

// InvalidateDevice drops a device's cached poll answer, and closes its
// hold window (held.go): what changed may be its deployment.
func (c *Core) InvalidateDevice(tenant, deviceID string) {
	if deviceID != "" {
		c.closeHold(tenant, deviceID)
	}
	if h := c.hooks.Invalidate; h != nil {
		h(tenant, deviceID)
	}
}

// New returns a Core with defaults filled in.
func New(st store.Store, blobs blob.Store, pub events.Publisher, log *slog.Logger, cfg Config) *Core {
	if cfg.MaxArtifactSize <= 0 {
		cfg.MaxArtifactSize = 4 << 30
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Minute
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = 2*cfg.PollInterval + time.Minute
	}
	if pub == nil {
		pub = events.Nop{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Quotas = cfg.Quotas.withDefaults()
	if cfg.Secrets == nil {
		k, _ := secret.ParseKey(secret.NewKey())
		cfg.Secrets, _ = secret.New(k)
	}
	c := &Core{Store: st, Blobs: blobs, Events: pub, Log: log, Now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }, Config: cfg}
	c.initQuotas()
	return c
}

// NewSecret returns a random credential with the given prefix: 32 bytes of
// entropy, URL-safe.
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// NewID returns a short random identifier with a prefix.
func NewID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// HashSecret is how tokens are stored.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}
