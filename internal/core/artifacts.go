package core

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/blob"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

// NewArtifact describes an upload.
type NewArtifact struct {
	Tenant      string
	Name        string
	Version     string
	Filename    string
	Type        string
	Labels      map[string]string
	Description string
	// SHA256, if set, must match the uploaded bytes.
	SHA256 string
	// Size is the declared length, or -1 when unknown.
	Size int64
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (c *Core) validateNewArtifact(a *NewArtifact) error {
	if err := flotilla.ValidateArtifactName(a.Name); err != nil {
		return err
	}
	if err := flotilla.ValidateVersion(a.Version); err != nil {
		return err
	}
	if a.Filename == "" {
		a.Filename = flotilla.DefaultFilename(a.Name, a.Version)
	}
	if err := flotilla.ValidateFilename(a.Filename); err != nil {
		return err
	}
	if a.Type == "" {
		a.Type = flotilla.ArtifactBinary
	}
	if err := flotilla.ValidateArtifactType(a.Type); err != nil {
		return err
	}
	if err := flotilla.ValidateLabels(a.Labels); err != nil {
		return err
	}
	if len(a.Description) > 4096 {
		return flotilla.Errorf(flotilla.EInvalid, "description is longer than 4096 characters")
	}
	a.SHA256 = strings.ToLower(a.SHA256)
	if a.SHA256 != "" && !sha256RE.MatchString(a.SHA256) {
		return flotilla.Errorf(flotilla.EInvalid, "sha256 %q is not 64 hex digits", a.SHA256)
	}
	if a.Size == 0 {
		return flotilla.Errorf(flotilla.EInvalid, "the artifact is empty: send its bytes as the request body")
	}
	if a.Size > c.Config.MaxArtifactSize {
		return flotilla.Errorf(flotilla.ETooLarge, "artifact of %d bytes exceeds the maximum of %d bytes", a.Size, c.Config.MaxArtifactSize)
	}
	return nil
}

// ValidateArtifactRequest checks an upload's metadata before its body is
// read, so a bad request fails without transferring bytes.
func (c *Core) ValidateArtifactRequest(p Principal, a *NewArtifact) error {
	tenant, err := p.TenantFor(a.Tenant)
	if err != nil {
		return err
	}
	a.Tenant = tenant
	if err := p.Require(flotilla.ScopeArtifactsWrite); err != nil {
		return err
	}
	return c.validateNewArtifact(a)
}

// UploadArtifact streams body into the blob store while hashing it, then
// records the metadata. Uploading the same bytes again under the same name
// and version returns the existing artifact (created=false); different bytes
// are EConflict. On any failure nothing is kept.
func (c *Core) UploadArtifact(ctx context.Context, p Principal, a NewArtifact, body io.Reader) (art flotilla.Artifact, created bool, err error) {
	if err := c.ValidateArtifactRequest(p, &a); err != nil {
		return flotilla.Artifact{}, false, err
	}
	if _, err := c.Store.GetTenant(ctx, a.Tenant); err != nil {
		return flotilla.Artifact{}, false, err
	}
	if err := c.checkArtifactCount(ctx, a.Tenant); err != nil {
		return flotilla.Artifact{}, false, err
	}
	sha1h, md5h := sha1.New(), md5.New()
	lr := &limitReader{r: body, left: c.Config.MaxArtifactSize, max: c.Config.MaxArtifactSize}
	r := io.TeeReader(lr, io.MultiWriter(sha1h, md5h))
	info, err := c.Blobs.Put(ctx, r, blob.PutOptions{SHA256: a.SHA256, SizeHint: a.Size})
	switch {
	case errors.Is(err, blob.ErrNoSpace):
		c.Log.Error("store artifact: the blob store is full", "err", err)
		return flotilla.Artifact{}, false, flotilla.Errorf(flotilla.ENoSpace, "the server's artifact storage is full: nothing was stored; free space or delete old artifacts")
	case errors.Is(err, blob.ErrChecksum):
		return flotilla.Artifact{}, false, flotilla.Errorf(flotilla.EInvalid, "sha256 mismatch: the uploaded bytes do not hash to %s; nothing was stored", a.SHA256)
	case lr.exceeded:
		return flotilla.Artifact{}, false, flotilla.Errorf(flotilla.ETooLarge, "artifact exceeds the maximum of %d bytes; nothing was stored", c.Config.MaxArtifactSize)
	case err != nil:
		if ctx.Err() != nil || errors.Is(err, io.ErrUnexpectedEOF) || lr.readErr != nil {
			return flotilla.Artifact{}, false, flotilla.Errorf(flotilla.EInvalid, "upload interrupted: %v; nothing was stored", err)
		}
		return flotilla.Artifact{}, false, c.blobError("store artifact", err)
	}
	if info.Size == 0 {
		c.deleteOrphanBlob(ctx, info.Key)
		return flotilla.Artifact{}, false, flotilla.Errorf(flotilla.EInvalid, "the artifact is empty: send its bytes as the request body; nothing was stored")
	}
	if a.Size >= 0 && a.Size != info.Size {
		c.deleteOrphanBlob(ctx, info.Key)
		return flotilla.Artifact{}, false, flotilla.Errorf(flotilla.EInvalid, "received %d bytes but %d were declared; nothing was stored", info.Size, a.Size)
	}
	art = flotilla.Artifact{
		Tenant: a.Tenant, Name: a.Name, Version: a.Version, Filename: a.Filename, Type: a.Type,
		Labels: a.Labels, Description: a.Description, Size: info.Size, SHA256: info.Key,
		SHA1: hex.EncodeToString(sha1h.Sum(nil)), MD5: hex.EncodeToString(md5h.Sum(nil)), CreatedAt: c.Now(),
	}
	if art.Labels == nil {
		art.Labels = map[string]string{}
	}
	unlock := c.locks.lock(info.Key)
	err = c.Store.CreateArtifact(ctx, &art)
	unlock()
	if flotilla.IsCode(err, flotilla.EConflict) {
		existing, gerr := c.Store.GetArtifact(ctx, a.Tenant, a.Name, a.Version)
		if gerr == nil && existing.SHA256 == info.Key {
			return existing, false, nil
		}
		c.deleteOrphanBlob(ctx, info.Key)
		return flotilla.Artifact{}, false, flotilla.Errorf(flotilla.EConflict, "artifact %s %s already exists with different content (sha256 %s); versions are immutable, upload a new version", a.Name, a.Version, existing.SHA256)
	}
	if err != nil {
		c.deleteOrphanBlob(ctx, info.Key)
		return flotilla.Artifact{}, false, err
	}
	c.Events.Publish(events.Event{Type: events.TypeArtifactAdded, Tenant: art.Tenant, Time: art.CreatedAt,
		Data: events.Message(map[string]any{"type": events.TypeArtifactAdded, "name": art.Name, "version": art.Version, "size": art.Size, "sha256": art.SHA256})})
	return art, true, nil
}

func (c *Core) blobError(op string, err error) error {
	c.Log.Error(op, "err", err)
	return flotilla.Errorf(flotilla.EUnavailable, "blob store unavailable; try again later")
}

// deleteOrphanBlob removes a blob no artifact references any more.
func (c *Core) deleteOrphanBlob(ctx context.Context, key string) {
	unlock := c.locks.lock(key)
	defer unlock()
	ref, err := c.Store.BlobReferenced(ctx, key)
	if err != nil || ref {
		return
	}
	if err := c.Blobs.Delete(context.WithoutCancel(ctx), key); err != nil {
		c.Log.Warn("delete orphaned blob", "sha256", key, "err", err)
	}
}

// limitReader fails once more than max bytes were read, remembering why.
type limitReader struct {
	r        io.Reader
	left     int64
	max      int64
	exceeded bool
	readErr  error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		l.exceeded = true
		return 0, fmt.Errorf("artifact exceeds %d bytes", l.max)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.exceeded = true
		return 0, fmt.Errorf("artifact exceeds %d bytes", l.max)
	}
	if err != nil && err != io.EOF {
		l.readErr = err
	}
	return n, err
}

// GetArtifact returns an artifact's metadata.
func (c *Core) GetArtifact(ctx context.Context, p Principal, tenant, name, version string) (flotilla.Artifact, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Artifact{}, err
	}
	if err := p.Require(flotilla.ScopeArtifactsRead); err != nil {
		return flotilla.Artifact{}, err
	}
	a, err := c.Store.GetArtifact(ctx, tenant, name, version)
	if err != nil {
		return a, err
	}
	return c.withModules(ctx, a)
}

// ArtifactQuery filters ListArtifacts.
type ArtifactQuery struct {
	Tenant   string
	Name     string
	Selector string
}

// ListArtifacts lists artifacts by name, versions in semantic-version order
// (newest last).
func (c *Core) ListArtifacts(ctx context.Context, p Principal, q ArtifactQuery) ([]flotilla.Artifact, error) {
	tenant, err := p.TenantFor(q.Tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeArtifactsRead); err != nil {
		return nil, err
	}
	sel, err := label.Parse(q.Selector)
	if err != nil {
		return nil, err
	}
	list, err := c.Store.ListArtifacts(ctx, tenant, store.ArtifactFilter{Name: q.Name, Selector: sel})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(list, func(a, b flotilla.Artifact) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return flotilla.CompareVersions(a.Version, b.Version)
	})
	return list, nil
}

// UpdateArtifact changes labels or description.
func (c *Core) UpdateArtifact(ctx context.Context, p Principal, tenant, name, version string, patch flotilla.ArtifactPatch) (flotilla.Artifact, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Artifact{}, err
	}
	if err := p.Require(flotilla.ScopeArtifactsWrite); err != nil {
		return flotilla.Artifact{}, err
	}
	if patch.Labels != nil {
		if err := flotilla.ValidateLabels(*patch.Labels); err != nil {
			return flotilla.Artifact{}, err
		}
	}
	if patch.Description != nil && len(*patch.Description) > 4096 {
		return flotilla.Artifact{}, flotilla.Errorf(flotilla.EInvalid, "description is longer than 4096 characters")
	}
	return c.Store.UpdateArtifact(ctx, tenant, name, version, patch)
}

// DeleteArtifact removes an artifact, and its bytes when no other artifact
// shares them.
func (c *Core) DeleteArtifact(ctx context.Context, p Principal, tenant, name, version string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeArtifactsWrite); err != nil {
		return err
	}
	a, orphan, err := c.Store.DeleteArtifact(ctx, tenant, name, version)
	if err != nil {
		return err
	}
	c.forgetRelease(tenant, a.ID)
	if orphan {
		c.deleteOrphanBlob(ctx, a.SHA256)
	}
	c.Events.Publish(events.Event{Type: events.TypeArtifactDeleted, Tenant: tenant, Time: c.Now(),
		Data: events.Message(map[string]any{"type": events.TypeArtifactDeleted, "name": name, "version": version})})
	return nil
}

// OpenArtifact returns the metadata and an open blob for reading.
func (c *Core) OpenArtifact(ctx context.Context, a flotilla.Artifact) (blob.Object, error) {
	if a.MultiModule() {
		return nil, flotilla.Errorf(flotilla.EConflict, "release %s %s is made of modules and has no file of its own; download its modules' files", a.Name, a.Version)
	}
	return c.openBlob(ctx, a.SHA256, "artifact "+a.Name+" "+a.Version)
}

// OpenFile opens a module file's bytes.
func (c *Core) OpenFile(ctx context.Context, m flotilla.Module, f flotilla.File) (blob.Object, error) {
	return c.openBlob(ctx, f.SHA256, fmt.Sprintf("file %s of software module %s %s", f.Filename, m.Name, m.Version))
}

func (c *Core) openBlob(ctx context.Context, key, what string) (blob.Object, error) {
	o, err := c.Blobs.Open(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		c.Log.Error("blob missing", "what", what, "sha256", key)
		return nil, flotilla.Errorf(flotilla.EUnavailable, "the bytes of %s are missing from the blob store", what)
	}
	if err != nil {
		return nil, c.blobError("open artifact", err)
	}
	return o, nil
}

// checkSigned refuses a release its tenant would have its devices refuse.
func (c *Core) checkSigned(ctx context.Context, tenant string, a flotilla.Artifact) error {
	if c.Signatures == nil {
		return nil
	}
	return c.Signatures.CheckRelease(ctx, tenant, a)
}

// Release is what devices are told of an artifact: in a signed tenant, the
// signed length and sha256, and where the release is in the repository.
type Release struct {
	flotilla.Artifact
	// Target is the TUF target path when the release is signed.
	Target string
}

// DeviceRelease describes a for devices of tenant.
func (c *Core) DeviceRelease(ctx context.Context, tenant string, a flotilla.Artifact) Release {
	r := Release{Artifact: a}
	if c.Signatures == nil {
		return r
	}
	if size, sha, ok := c.Signatures.SignedSize(ctx, tenant, a); ok {
		r.Size, r.SHA256, r.Target = size, sha, a.TargetPath()
	}
	return r
}

// RepositoryCapability lets a push node read the tenant's TUF repository
// for a while ("" when releases are not signed).
func (c *Core) RepositoryCapability(tenant string, ttl time.Duration) string {
	if c.Signatures == nil {
		return ""
	}
	return c.Signatures.Capability(tenant, ttl)
}
