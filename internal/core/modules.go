package core

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"strings"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/blob"
)

// NewModule describes a software module to create.
type NewModule struct {
	Tenant, Name, Version, Type, Vendor, Description string
}

// CreateModule creates an empty software module; files are uploaded into
// it, then it is combined with others into a release.
func (c *Core) CreateModule(ctx context.Context, p Principal, nm NewModule) (flotilla.Module, error) {
	tenant, err := c.writeArtifacts(ctx, p, nm.Tenant)
	if err != nil {
		return flotilla.Module{}, err
	}
	if err := flotilla.ValidateModuleName(nm.Name); err != nil {
		return flotilla.Module{}, err
	}
	if err := flotilla.ValidateVersion(nm.Version); err != nil {
		return flotilla.Module{}, err
	}
	if nm.Type == "" {
		nm.Type = flotilla.ModuleOS
	}
	if err := flotilla.ValidateArtifactType(nm.Type); err != nil {
		return flotilla.Module{}, flotilla.Errorf(flotilla.EInvalid, "module type %q is invalid: use 1-64 lower-case letters, digits or '._/+-' (os, application, firmware, ...)", nm.Type)
	}
	if len(nm.Vendor) > 256 || len(nm.Description) > 4096 {
		return flotilla.Module{}, flotilla.Errorf(flotilla.EInvalid, "vendor is limited to 256 and description to 4096 characters")
	}
	m := flotilla.Module{Tenant: tenant, Name: nm.Name, Version: nm.Version, Type: nm.Type, Vendor: nm.Vendor, Description: nm.Description, CreatedAt: c.Now()}
	if err := c.Store.CreateModule(ctx, &m); err != nil {
		return flotilla.Module{}, err
	}
	return m, nil
}

// writeArtifacts resolves the tenant for a repository write.
func (c *Core) writeArtifacts(ctx context.Context, p Principal, tenant string) (string, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return "", err
	}
	if err := p.Require(flotilla.ScopeArtifactsWrite); err != nil {
		return "", err
	}
	_, err = c.Store.GetTenant(ctx, tenant)
	return tenant, err
}

func (c *Core) readArtifacts(p Principal, tenant string) (string, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return "", err
	}
	return tenant, p.Require(flotilla.ScopeArtifactsRead)
}

// GetModule returns a module with its files.
func (c *Core) GetModule(ctx context.Context, p Principal, tenant string, id int64) (flotilla.Module, error) {
	tenant, err := c.readArtifacts(p, tenant)
	if err != nil {
		return flotilla.Module{}, err
	}
	return c.Store.GetModule(ctx, tenant, id)
}

// ListModules lists a tenant's modules.
func (c *Core) ListModules(ctx context.Context, p Principal, tenant string, f flotilla.ModuleFilter) ([]flotilla.Module, error) {
	tenant, err := c.readArtifacts(p, tenant)
	if err != nil {
		return nil, err
	}
	return c.Store.ListModules(ctx, tenant, f)
}

// DeleteModule deletes a module no release includes, with its files.
func (c *Core) DeleteModule(ctx context.Context, p Principal, tenant string, id int64) error {
	tenant, err := c.writeArtifacts(ctx, p, tenant)
	if err != nil {
		return err
	}
	orphans, err := c.Store.DeleteModule(ctx, tenant, id)
	for _, key := range orphans {
		c.deleteOrphanBlob(ctx, key)
	}
	return err
}

// NewFile describes a file uploaded into a module; the hashes given are
// checked against the bytes.
type NewFile struct {
	Filename          string
	SHA256, SHA1, MD5 string
	Size              int64 // declared length, or -1
}

// UploadModuleFile streams body into the blob store and adds it to the
// module. Nothing is kept on any failure.
func (c *Core) UploadModuleFile(ctx context.Context, p Principal, tenant string, moduleID int64, nf NewFile, body io.Reader) (flotilla.File, error) {
	tenant, err := c.writeArtifacts(ctx, p, tenant)
	if err != nil {
		return flotilla.File{}, err
	}
	if err := flotilla.ValidateFilename(nf.Filename); err != nil {
		return flotilla.File{}, err
	}
	nf.SHA256, nf.SHA1, nf.MD5 = strings.ToLower(nf.SHA256), strings.ToLower(nf.SHA1), strings.ToLower(nf.MD5)
	if nf.SHA256 != "" && !sha256RE.MatchString(nf.SHA256) {
		return flotilla.File{}, flotilla.Errorf(flotilla.EInvalid, "sha256 %q is not 64 hex digits", nf.SHA256)
	}
	if _, err := c.Store.GetModule(ctx, tenant, moduleID); err != nil {
		return flotilla.File{}, err
	}
	sha1h, md5h := sha1.New(), md5.New()
	lr := &limitReader{r: body, left: c.Config.MaxArtifactSize, max: c.Config.MaxArtifactSize}
	info, err := c.Blobs.Put(ctx, io.TeeReader(lr, io.MultiWriter(sha1h, md5h)), blob.PutOptions{SHA256: nf.SHA256, SizeHint: nf.Size})
	switch {
	case errors.Is(err, blob.ErrNoSpace):
		return flotilla.File{}, flotilla.Errorf(flotilla.ENoSpace, "the server's artifact storage is full: nothing was stored")
	case errors.Is(err, blob.ErrChecksum):
		return flotilla.File{}, flotilla.Errorf(flotilla.EInvalid, "sha256 mismatch: the uploaded bytes do not hash to %s; nothing was stored", nf.SHA256)
	case lr.exceeded:
		return flotilla.File{}, flotilla.Errorf(flotilla.ETooLarge, "file exceeds the maximum of %d bytes; nothing was stored", c.Config.MaxArtifactSize)
	case err != nil:
		if ctx.Err() != nil || errors.Is(err, io.ErrUnexpectedEOF) || lr.readErr != nil {
			return flotilla.File{}, flotilla.Errorf(flotilla.EInvalid, "upload interrupted: %v; nothing was stored", err)
		}
		return flotilla.File{}, c.blobError("store module file", err)
	}
	f := flotilla.File{ModuleID: moduleID, Filename: nf.Filename, Size: info.Size, SHA256: info.Key,
		SHA1: hex.EncodeToString(sha1h.Sum(nil)), MD5: hex.EncodeToString(md5h.Sum(nil)), CreatedAt: c.Now()}
	fail := func(err error) (flotilla.File, error) {
		c.deleteOrphanBlob(ctx, info.Key)
		return flotilla.File{}, err
	}
	switch {
	case info.Size == 0:
		return fail(flotilla.Errorf(flotilla.EInvalid, "the file is empty; nothing was stored"))
	case nf.Size >= 0 && nf.Size != info.Size:
		return fail(flotilla.Errorf(flotilla.EInvalid, "received %d bytes but %d were declared; nothing was stored", info.Size, nf.Size))
	case nf.SHA1 != "" && nf.SHA1 != f.SHA1:
		return fail(flotilla.Errorf(flotilla.EInvalid, "sha1 mismatch: the uploaded bytes hash to %s, not %s; nothing was stored", f.SHA1, nf.SHA1))
	case nf.MD5 != "" && nf.MD5 != f.MD5:
		return fail(flotilla.Errorf(flotilla.EInvalid, "md5 mismatch: the uploaded bytes hash to %s, not %s; nothing was stored", f.MD5, nf.MD5))
	}
	unlock := c.locks.lock(info.Key)
	err = c.Store.AddModuleFile(ctx, tenant, &f)
	unlock()
	if err != nil {
		return fail(err)
	}
	return f, nil
}

// DeleteModuleFile deletes a file of a module no release includes.
func (c *Core) DeleteModuleFile(ctx context.Context, p Principal, tenant string, moduleID, fileID int64) error {
	tenant, err := c.writeArtifacts(ctx, p, tenant)
	if err != nil {
		return err
	}
	f, orphan, err := c.Store.DeleteModuleFile(ctx, tenant, moduleID, fileID)
	if err == nil && orphan {
		c.deleteOrphanBlob(ctx, f.SHA256)
	}
	return err
}

// NewRelease describes a release made of modules.
type NewRelease struct {
	Tenant, Name, Version, Type, Description string
	Labels                                   map[string]string
	// Modules are the module ids in install order.
	Modules []int64
}

// CreateRelease creates a release of several modules (hawkBit's
// distribution set); it is deployed, rolled out and put on channels like
// any artifact.
func (c *Core) CreateRelease(ctx context.Context, p Principal, nr NewRelease) (flotilla.Artifact, error) {
	tenant, err := c.writeArtifacts(ctx, p, nr.Tenant)
	if err != nil {
		return flotilla.Artifact{}, err
	}
	if err := flotilla.ValidateArtifactName(nr.Name); err != nil {
		return flotilla.Artifact{}, err
	}
	if err := flotilla.ValidateVersion(nr.Version); err != nil {
		return flotilla.Artifact{}, err
	}
	if nr.Type == "" {
		nr.Type = "release"
	}
	if err := flotilla.ValidateArtifactType(nr.Type); err != nil {
		return flotilla.Artifact{}, err
	}
	if len(nr.Modules) == 0 {
		return flotilla.Artifact{}, flotilla.Errorf(flotilla.EInvalid, "a release needs at least one module: give their ids in modules")
	}
	seen := map[int64]bool{}
	for _, id := range nr.Modules {
		if seen[id] {
			return flotilla.Artifact{}, flotilla.Errorf(flotilla.EInvalid, "module %d is listed twice", id)
		}
		seen[id] = true
		m, err := c.Store.GetModule(ctx, tenant, id)
		if err != nil {
			return flotilla.Artifact{}, flotilla.Errorf(flotilla.EInvalid, "software module %d does not exist", id)
		}
		if len(m.Files) == 0 {
			return flotilla.Artifact{}, flotilla.Errorf(flotilla.EInvalid, "software module %d (%s %s) has no files: upload them before making a release of it", id, m.Name, m.Version)
		}
	}
	if err := c.checkArtifactCount(ctx, tenant); err != nil {
		return flotilla.Artifact{}, err
	}
	if nr.Labels == nil {
		nr.Labels = map[string]string{}
	}
	if err := flotilla.ValidateLabels(nr.Labels); err != nil {
		return flotilla.Artifact{}, err
	}
	a := flotilla.Artifact{Tenant: tenant, Name: nr.Name, Version: nr.Version, Type: nr.Type, Labels: nr.Labels, Description: nr.Description, CreatedAt: c.Now()}
	if err := c.Store.CreateRelease(ctx, &a, nr.Modules); err != nil {
		return flotilla.Artifact{}, err
	}
	return c.withModules(ctx, a)
}

// GetRelease returns a release (any artifact) by id, with its modules.
func (c *Core) GetRelease(ctx context.Context, p Principal, tenant string, id int64) (flotilla.Artifact, error) {
	tenant, err := c.readArtifacts(p, tenant)
	if err != nil {
		return flotilla.Artifact{}, err
	}
	a, err := c.Store.GetArtifactByID(ctx, tenant, id)
	if err != nil {
		return a, err
	}
	return c.withModules(ctx, a)
}

// DeleteRelease deletes a release by id (an artifact, with the module a
// single file brought).
func (c *Core) DeleteRelease(ctx context.Context, p Principal, tenant string, id int64) error {
	tenant, err := c.writeArtifacts(ctx, p, tenant)
	if err != nil {
		return err
	}
	a, err := c.Store.GetArtifactByID(ctx, tenant, id)
	if err != nil {
		return err
	}
	return c.DeleteArtifact(ctx, p, tenant, a.Name, a.Version)
}
