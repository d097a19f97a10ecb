package core

import (
	"context"
	"strings"

	"github.com/flotilla-ota/flotilla"
)

// DeploymentBase returns a deployment the device should run, without its
// history, with its artifact, and records that the device fetched it.
// Canceled or finished deployments are ENotFound, as in hawkBit.
func (c *Core) DeploymentBase(ctx context.Context, id DeviceIdentity, actionID int64) (flotilla.Deployment, flotilla.Artifact, error) {
	d, err := c.ownDeployment(ctx, id, actionID, c.Store.GetDeploymentBrief)
	if err != nil {
		return d, flotilla.Artifact{}, err
	}
	if !d.State.Active() || d.State == flotilla.StateCancelRequested {
		return d, flotilla.Artifact{}, flotilla.Errorf(flotilla.ENotFound, "action %d is %s", actionID, d.State)
	}
	a, err := c.DeployedRelease(ctx, id.Tenant, d.ArtifactID)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return d, a, flotilla.Errorf(flotilla.ENotFound, "the artifact of action %d no longer exists", actionID)
	}
	if err != nil {
		return d, a, err
	}
	if d.RetrievedAt == nil {
		if d, err = c.retrieve(ctx, RefOf(d), ""); err != nil {
			return d, a, err
		}
	}
	return d, a, nil
}

// retrieve records that a device has its deployment (a DDI fetch, a DMF
// send; detail, if set, says how). Not a state change: written at once,
// not announced. The write starts the deployment's hold window (held.go).
func (c *Core) retrieve(ctx context.Context, ref Ref, detail string) (flotilla.Deployment, error) {
	d, err := c.Store.UpdateDeployment(ctx, ref.Tenant, ref.DeviceID, ref.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		ch := flotilla.Retrieve(d, c.Now())
		if ch.Event != nil && detail != "" {
			ch.Event.Details = []string{detail}
		}
		return ch, nil
	})
	if err == nil {
		c.synced(d)
	}
	return d, err
}

// InstalledBase returns the device's installed (succeeded) deployment.
func (c *Core) InstalledBase(ctx context.Context, id DeviceIdentity, actionID int64) (flotilla.Deployment, flotilla.Artifact, error) {
	d, err := c.deviceDeployment(ctx, id, actionID)
	if err != nil {
		return d, flotilla.Artifact{}, err
	}
	if d.State != flotilla.StateSucceeded {
		return d, flotilla.Artifact{}, flotilla.Errorf(flotilla.ENotFound, "action %d is not installed", actionID)
	}
	a, err := c.Store.GetArtifactByID(ctx, id.Tenant, d.ArtifactID)
	if err != nil {
		return d, a, flotilla.Errorf(flotilla.ENotFound, "the artifact of action %d no longer exists", actionID)
	}
	a, err = c.withModules(ctx, a)
	return d, a, err
}

// DeviceFile returns a file of a software module, for a device that was
// assigned a release including the module. With a file name, the module
// comes without its files; without one, with them all.
func (c *Core) DeviceFile(ctx context.Context, id DeviceIdentity, moduleID int64, filename string) (flotilla.Module, flotilla.File, error) {
	if filename != "" {
		// A download reads once; only a refusal reads again, to say why.
		m, f, err := c.Store.AssignedModuleFile(ctx, id.Tenant, id.DeviceID, moduleID, filename)
		if !flotilla.IsCode(err, flotilla.ENotFound) {
			return m, f, err
		}
	}
	m, err := c.Store.GetModule(ctx, id.Tenant, moduleID)
	if err != nil {
		return m, flotilla.File{}, flotilla.Errorf(flotilla.ENotFound, "software module %d not found", moduleID)
	}
	ok, err := c.Store.ModuleAssigned(ctx, id.Tenant, id.DeviceID, moduleID)
	if err != nil {
		return m, flotilla.File{}, err
	}
	if !ok {
		return m, flotilla.File{}, flotilla.Errorf(flotilla.ENotFound, "software module %d is not assigned to device %q", moduleID, id.DeviceID)
	}
	if filename == "" {
		return m, flotilla.File{}, nil
	}
	for _, f := range m.Files {
		if f.Filename == filename {
			return m, f, nil
		}
	}
	return m, flotilla.File{}, flotilla.Errorf(flotilla.ENotFound, "software module %d has no artifact %q", moduleID, filename)
}

// AnonymousFile returns a module file to a request without credentials,
// where the tenant allows anonymous downloads.
func (c *Core) AnonymousFile(ctx context.Context, tenant string, moduleID int64, filename string) (flotilla.Module, flotilla.File, error) {
	t, err := c.Store.GetTenant(ctx, strings.ToLower(tenant))
	if err != nil || !t.Settings.AnonymousDownload {
		return flotilla.Module{}, flotilla.File{}, flotilla.Errorf(flotilla.EUnauthorized, "send 'Authorization: TargetToken <device token>' or 'GatewayToken <token>'")
	}
	m, err := c.Store.GetModule(ctx, t.Name, moduleID)
	if err != nil {
		return m, flotilla.File{}, err
	}
	for _, f := range m.Files {
		if f.Filename == filename {
			return m, f, nil
		}
	}
	return m, flotilla.File{}, flotilla.Errorf(flotilla.ENotFound, "software module %d has no artifact %q", moduleID, filename)
}

// withModules reads a release's modules (every release has at least one).
func (c *Core) withModules(ctx context.Context, a flotilla.Artifact) (flotilla.Artifact, error) {
	mods, err := c.Store.ReleaseModules(ctx, a.Tenant, a.ID)
	if err != nil {
		return a, err
	}
	a.Modules = mods
	return a, nil
}
