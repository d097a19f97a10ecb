package tufrepo

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/flotilla-ota/flotilla"
)

// Custom is what a target's "custom" object holds: what the release is, and
// whether the operator sanctioned installing it over a newer version.
type Custom struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	Type           string `json:"type,omitempty"`
	AllowDowngrade bool   `json:"allow_downgrade,omitempty"`
}

// TargetPath is where a release is in the repository (see
// flotilla.Artifact.TargetPath).
func TargetPath(a flotilla.Artifact) string { return a.TargetPath() }

// targetsCache holds a tenant's current targets, re-read when a newer
// version was stored (checked at most every cacheFor).
type targetsCache struct {
	checked time.Time
	version int64
	signed  bool
	meta    *metadata.Metadata[metadata.TargetsType]
}

const cacheFor = 2 * time.Second

func (r *Repo) forget(tenant string) {
	r.mu.Lock()
	delete(r.cache, tenant)
	r.mu.Unlock()
}

func (r *Repo) targets(ctx context.Context, tenant string) (*targetsCache, error) {
	now := time.Now()
	r.mu.Lock()
	c := r.cache[tenant]
	r.mu.Unlock()
	if c != nil && now.Sub(c.checked) < cacheFor {
		return c, nil
	}
	v, err := r.st.LatestTrustVersion(ctx, tenant, Targets)
	if err != nil {
		return nil, err
	}
	if c != nil && c.version == v {
		fresh := *c
		fresh.checked = now
		r.mu.Lock()
		r.cache[tenant] = &fresh
		r.mu.Unlock()
		return &fresh, nil
	}
	rv, err := r.st.LatestTrustVersion(ctx, tenant, Root)
	if err != nil {
		return nil, err
	}
	fresh := &targetsCache{checked: now, version: v, signed: rv > 0}
	if v > 0 {
		m, err := r.st.TrustMetadataVersion(ctx, tenant, Targets, v)
		if err != nil {
			return nil, err
		}
		if fresh.meta, err = metadata.Targets().FromBytes(m.Body); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.cache[tenant] = fresh
	r.mu.Unlock()
	return fresh, nil
}

// Target returns the signed description of a release, and whether the
// tenant is signed at all; tf is nil for a release that is not signed.
func (r *Repo) Target(ctx context.Context, tenant string, a flotilla.Artifact) (tf *metadata.TargetFiles, signed bool, err error) {
	c, err := r.targets(ctx, tenant)
	if err != nil {
		return nil, false, err
	}
	if c.meta != nil {
		tf = c.meta.Signed.Targets[TargetPath(a)]
	}
	return tf, c.signed, nil
}

// CheckRelease refuses a release that a signed tenant's devices would
// refuse: one that is not in the current targets metadata.
func (r *Repo) CheckRelease(ctx context.Context, tenant string, a flotilla.Artifact) error {
	tf, signed, err := r.Target(ctx, tenant, a)
	if err != nil || !signed || tf != nil {
		return err
	}
	if a.MultiModule() {
		return flotilla.Errorf(flotilla.EConflict, "release %s %s is made of several modules, and tenant %s accepts signed releases only: signing releases of several modules is not supported yet", a.Name, a.Version, tenant)
	}
	// Signed on another replica a moment ago? Look again before refusing.
	r.forget(tenant)
	if tf, _, err = r.Target(ctx, tenant, a); err != nil || tf != nil {
		return err
	}
	return flotilla.Errorf(flotilla.EConflict, "release %s %s is not signed, and tenant %s accepts signed releases only: sign it with `flotilla release sign %s %s --keys DIR`",
		a.Name, a.Version, tenant, a.Name, a.Version)
}

// SignedSize is the length and sha256 devices of a signed tenant are told:
// the signed ones, so that a device that checks hashes but not TUF still
// gets data consistent with the signature. ok is false when the tenant is
// not signed or the release is not.
func (r *Repo) SignedSize(ctx context.Context, tenant string, a flotilla.Artifact) (size int64, sha string, ok bool) {
	tf, _, err := r.Target(ctx, tenant, a)
	if err != nil || tf == nil {
		return 0, "", false
	}
	return tf.Length, tf.Hashes["sha256"].String(), true
}

func sha256Of(b []byte) metadata.HexBytes {
	s := sha256.Sum256(b)
	return s[:]
}

type hexHash struct{ hash.Hash }

func newSHA512() hexHash { return hexHash{sha512.New()} }

func (h hexHash) hex() string { return hex.EncodeToString(h.Sum(nil)) }

// Capability is a credential for reading the tenant's repository that the
// server gives a push node with each update (nodes have no credential of
// their own towards the server). It is valid for ttl.
func (r *Repo) Capability(tenant string, ttl time.Duration) string {
	exp := strconv.FormatInt(r.now().Add(ttl).Unix(), 10)
	return capPrefix + exp + "." + base64.RawURLEncoding.EncodeToString(r.box.MAC(tenant+"|"+exp, "tuf-capability"))
}

const capPrefix = "ftc_"

// CheckCapability reports whether tok is a live capability for tenant.
func (r *Repo) CheckCapability(tenant, tok string) bool {
	rest, ok := strings.CutPrefix(tok, capPrefix)
	if !ok {
		return false
	}
	exp, mac, ok := strings.Cut(rest, ".")
	n, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || r.now().Unix() > n {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(mac)
	return err == nil && hmac.Equal(got, r.box.MAC(tenant+"|"+exp, "tuf-capability"))
}

// TargetFile resolves the name a TUF client downloads a target by —
// NAME/VERSION/FILENAME, or with consistent snapshots
// NAME/VERSION/HASH.FILENAME — to the signed artifact holding its bytes.
func (r *Repo) TargetFile(ctx context.Context, tenant, name string) (flotilla.Artifact, error) {
	notFound := flotilla.Errorf(flotilla.ENotFound, "no signed target %q in tenant %s's repository", name, tenant)
	parts := strings.Split(name, "/")
	if len(parts) != 3 {
		return flotilla.Artifact{}, notFound
	}
	a, err := r.st.GetArtifact(ctx, tenant, parts[0], parts[1])
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return a, notFound
	}
	if err != nil {
		return a, err
	}
	tf, _, err := r.Target(ctx, tenant, a)
	if err != nil {
		return a, err
	}
	if tf == nil {
		return a, notFound
	}
	file := strings.Split(a.TargetPath(), "/")[2]
	if parts[2] == file {
		return a, nil
	}
	if h, f, ok := strings.Cut(parts[2], "."); ok && f == file {
		for _, sum := range tf.Hashes {
			if sum.String() == h {
				return a, nil
			}
		}
	}
	return a, notFound
}
