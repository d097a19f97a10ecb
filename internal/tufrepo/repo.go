// Package tufrepo is the server's half of signed releases: one TUF
// repository per tenant (The Update Framework 1.0, through go-tuf/v2).
//
// The operator's offline keys sign root (who may sign what) and targets
// (which releases exist, with their lengths and hashes). The server keeps
// only the online snapshot and timestamp keys, sealed at rest, and uses
// them to say "this is the current set of metadata, as of now": a new
// snapshot when targets change, a new timestamp before the last one
// expires. A server, database or object store that is compromised can
// therefore withhold updates, but cannot make a verifying device install
// anything the offline keys did not sign.
//
// The repository checks what it is given as a device would (signatures,
// thresholds, versions, expiry) and more (each target is a stored artifact
// with those exact bytes), so that a mistake is refused at upload rather
// than by the fleet.
package tufrepo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/blob"
	"github.com/flotilla-ota/flotilla/internal/secret"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// The top-level roles.
const (
	Root      = metadata.ROOT
	Targets   = metadata.TARGETS
	Snapshot  = metadata.SNAPSHOT
	Timestamp = metadata.TIMESTAMP
)

// Store is what the repository keeps and reads.
type Store interface {
	store.Trust
	GetArtifact(ctx context.Context, tenant, name, version string) (flotilla.Artifact, error)
}

// Config tunes the online roles.
type Config struct {
	// TimestampExpiry is how long a timestamp is valid (default 24h); it is
	// re-signed once less than half of that is left, so devices that
	// cannot reach a fresh one notice within a day (freeze attacks).
	TimestampExpiry time.Duration
	// SnapshotExpiry is how long a snapshot is valid (default 7 days),
	// renewed the same way.
	SnapshotExpiry time.Duration
}

// Repo is every tenant's TUF repository.
type Repo struct {
	st    Store
	blobs blob.Store
	box   *secret.Box
	now   func() time.Time
	cfg   Config
	log   *slog.Logger

	publish sync.Mutex // one publisher per process; replicas race on versions
	mu      sync.Mutex
	cache   map[string]*targetsCache
}

// New returns the repositories kept in st, sealing keys with box.
func New(st Store, blobs blob.Store, box *secret.Box, now func() time.Time, cfg Config, log *slog.Logger) *Repo {
	if cfg.TimestampExpiry <= 0 {
		cfg.TimestampExpiry = 24 * time.Hour
	}
	if cfg.SnapshotExpiry <= 0 {
		cfg.SnapshotExpiry = 7 * 24 * time.Hour
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Repo{st: st, blobs: blobs, box: box, now: now, cfg: cfg, log: log, cache: map[string]*targetsCache{}}
}

// TimestampExpiry is how long each timestamp is valid.
func (r *Repo) TimestampExpiry() time.Duration { return r.cfg.TimestampExpiry }

// onlineKey is a snapshot or timestamp key with its signer.
type onlineKey struct {
	key    *metadata.Key
	signer signature.Signer
}

func sealContext(tenant, role string) string { return "tuf-key/" + tenant + "/" + role }

// OnlineKeys returns the tenant's snapshot and timestamp public keys,
// generating them on first use.
func (r *Repo) OnlineKeys(ctx context.Context, tenant string) (snapshot, timestamp *metadata.Key, err error) {
	keys, err := r.onlineKeys(ctx, tenant)
	if err != nil {
		return nil, nil, err
	}
	return keys[Snapshot].key, keys[Timestamp].key, nil
}

func (r *Repo) onlineKeys(ctx context.Context, tenant string) (map[string]onlineKey, error) {
	for attempt := 0; ; attempt++ {
		stored, err := r.st.TrustKeys(ctx, tenant)
		if err != nil {
			return nil, err
		}
		if len(stored) > 0 {
			return r.openKeys(tenant, stored)
		}
		var fresh []store.TrustKey
		for _, role := range []string{Snapshot, Timestamp} {
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return nil, err
			}
			k, _ := metadata.KeyFromPublicKey(pub)
			id, _ := k.ID()
			pj, _ := json.Marshal(k)
			fresh = append(fresh, store.TrustKey{Tenant: tenant, Role: role, KeyID: id, Public: string(pj),
				PrivateSealed: r.box.Seal(base64.StdEncoding.EncodeToString(priv.Seed()), sealContext(tenant, role)), CreatedAt: r.now()})
		}
		err = r.st.AddTrustKeys(ctx, fresh)
		if flotilla.IsCode(err, flotilla.EConflict) && attempt == 0 {
			continue // another replica made them first
		}
		if err != nil {
			return nil, fmt.Errorf("store online keys: %w", err)
		}
		r.log.Info("generated online TUF keys", "tenant", tenant)
	}
}

func (r *Repo) openKeys(tenant string, stored []store.TrustKey) (map[string]onlineKey, error) {
	out := map[string]onlineKey{}
	for _, sk := range stored {
		var k metadata.Key
		if err := json.Unmarshal([]byte(sk.Public), &k); err != nil {
			return nil, fmt.Errorf("online %s key of %s: %w", sk.Role, tenant, err)
		}
		seed, err := r.box.Open(sk.PrivateSealed, sealContext(tenant, sk.Role))
		if err != nil {
			return nil, fmt.Errorf("online %s key of %s does not open under this server's secret key: %w", sk.Role, tenant, err)
		}
		raw, err := base64.StdEncoding.DecodeString(seed)
		if err != nil || len(raw) != ed25519.SeedSize {
			return nil, fmt.Errorf("online %s key of %s is damaged", sk.Role, tenant)
		}
		signer, err := signature.LoadED25519Signer(ed25519.NewKeyFromSeed(raw))
		if err != nil {
			return nil, err
		}
		out[sk.Role] = onlineKey{key: &k, signer: signer}
	}
	if out[Snapshot].key == nil || out[Timestamp].key == nil {
		return nil, fmt.Errorf("tenant %s has an incomplete set of online keys", tenant)
	}
	return out, nil
}

// Status describes a tenant's repository.
type Status struct {
	// Signed is true once a root was uploaded: from then on only signed
	// releases can be deployed.
	Signed bool
	// OnlineKeys are the snapshot and timestamp keys a root must name.
	OnlineKeys map[string]*metadata.Key
	// Versions and Expires of each role present.
	Versions map[string]int64
	Expires  map[string]time.Time
	// Releases counts the targets signed.
	Releases int
}

// Status reports where the tenant's repository stands, generating the
// online keys on first use.
func (r *Repo) Status(ctx context.Context, tenant string) (Status, error) {
	snap, ts, err := r.OnlineKeys(ctx, tenant)
	if err != nil {
		return Status{}, err
	}
	st := Status{OnlineKeys: map[string]*metadata.Key{Snapshot: snap, Timestamp: ts}, Versions: map[string]int64{}, Expires: map[string]time.Time{}}
	for _, role := range []string{Root, Targets, Snapshot, Timestamp} {
		m, err := r.st.LatestTrustMetadata(ctx, tenant, role)
		if flotilla.IsCode(err, flotilla.ENotFound) {
			continue
		}
		if err != nil {
			return Status{}, err
		}
		st.Versions[role], st.Expires[role] = m.Version, m.Expires
	}
	st.Signed = st.Versions[Root] > 0
	if tc, err := r.targets(ctx, tenant); err == nil && tc.meta != nil {
		st.Releases = len(tc.meta.Signed.Targets)
	}
	return st, nil
}

// File returns one metadata file as TUF clients name it: root.json,
// N.root.json, timestamp.json, and for snapshot and targets either the
// plain name (the newest) or N.name.json (consistent snapshots).
func (r *Repo) File(ctx context.Context, tenant, name string) ([]byte, error) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return nil, flotilla.Errorf(flotilla.ENotFound, "no TUF metadata file %q", name)
	}
	var version int64
	if v, role, ok := strings.Cut(base, "."); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, flotilla.Errorf(flotilla.ENotFound, "no TUF metadata file %q", name)
		}
		version, base = n, role
	}
	switch base {
	case Root, Targets, Snapshot:
	case Timestamp:
		if version != 0 {
			return nil, flotilla.Errorf(flotilla.ENotFound, "timestamp.json has no versioned names")
		}
	default:
		return nil, flotilla.Errorf(flotilla.ENotFound, "no TUF metadata file %q (delegated roles are not served)", name)
	}
	var m store.TrustMetadata
	var err error
	if version == 0 {
		m, err = r.st.LatestTrustMetadata(ctx, tenant, base)
	} else {
		m, err = r.st.TrustMetadataVersion(ctx, tenant, base, version)
	}
	if err != nil {
		if flotilla.IsCode(err, flotilla.ENotFound) {
			return nil, flotilla.Errorf(flotilla.ENotFound, "no %s in tenant %s's TUF repository", name, tenant)
		}
		return nil, err
	}
	return m.Body, nil
}
