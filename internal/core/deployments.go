package core

import (
	"context"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/maintenance"
)

// AssignRequest is a direct assignment of an artifact to one device.
type AssignRequest struct {
	Tenant          string
	DeviceID        string
	ArtifactName    string
	ArtifactVersion string
	Type            string
	ForceAt         *time.Time
	Window          *flotilla.MaintenanceWindow
}

// AssignDeployment assigns an artifact to a device, superseding whatever the
// device was doing (hawkBit's semantics).
func (c *Core) AssignDeployment(ctx context.Context, p Principal, req AssignRequest) (flotilla.Deployment, error) {
	tenant, err := p.TenantFor(req.Tenant)
	if err != nil {
		return flotilla.Deployment{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Deployment{}, err
	}
	typ, err := flotilla.ParseDeploymentType(req.Type)
	if err != nil {
		return flotilla.Deployment{}, err
	}
	if typ == flotilla.TypeTimeForced && req.ForceAt == nil {
		return flotilla.Deployment{}, flotilla.Errorf(flotilla.EInvalid, "a timeforced deployment needs force_at, the time it becomes forced")
	}
	if req.Window != nil {
		if err := ValidateWindowAt(*req.Window, c.Now()); err != nil {
			return flotilla.Deployment{}, err
		}
	}
	if req.ArtifactName == "" || req.ArtifactVersion == "" {
		return flotilla.Deployment{}, flotilla.Errorf(flotilla.EInvalid, "artifact.name and artifact.version are required")
	}
	a, err := c.Store.GetArtifact(ctx, tenant, req.ArtifactName, req.ArtifactVersion)
	if err != nil {
		return flotilla.Deployment{}, err
	}
	if err := c.checkSigned(ctx, tenant, a); err != nil {
		return flotilla.Deployment{}, err
	}
	if _, err := c.Store.GetDevice(ctx, tenant, req.DeviceID); err != nil {
		return flotilla.Deployment{}, err
	}
	d := flotilla.Deployment{Tenant: tenant, DeviceID: req.DeviceID, Type: typ, ForceAt: req.ForceAt, Window: req.Window}
	if err := c.assign(ctx, &d, a, "assigned "+a.Name+" "+a.Version+" ("+string(typ)+")"); err != nil {
		return flotilla.Deployment{}, err
	}
	return c.Store.GetDeployment(ctx, tenant, d.ID)
}

// assign writes d — tenant, device, type and window already set — as a
// new pull deployment of a outside any rollout, superseding what the
// device was doing, and tells watchers.
func (c *Core) assign(ctx context.Context, d *flotilla.Deployment, a flotilla.Artifact, detail string) error {
	now := c.Now()
	d.ArtifactID, d.ArtifactName, d.ArtifactVersion = a.ID, a.Name, a.Version
	d.Attempt, d.Delivery, d.State = 1, flotilla.DeliveryPull, flotilla.StatePending
	d.CreatedAt, d.UpdatedAt, d.StartedAt = now, now, &now
	return c.create(ctx, d, detail, "")
}

// ListDeviceDeployments returns a device's deployments, newest first, each
// with its history.
func (c *Core) ListDeviceDeployments(ctx context.Context, p Principal, tenant, deviceID string, limit int) ([]flotilla.Deployment, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeDevicesRead); err != nil {
		return nil, err
	}
	if _, err := c.Store.GetDevice(ctx, tenant, deviceID); err != nil {
		return nil, err
	}
	c.writeHeldOf(ctx, tenant, deviceID)
	return c.Store.ListDeviceDeployments(ctx, tenant, deviceID, limit)
}

// GetDeviceDeployment returns one deployment of a device.
func (c *Core) GetDeviceDeployment(ctx context.Context, p Principal, tenant, deviceID string, id int64) (flotilla.Deployment, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Deployment{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesRead); err != nil {
		return flotilla.Deployment{}, err
	}
	c.writeHeldOf(ctx, tenant, deviceID)
	d, err := c.Store.GetDeployment(ctx, tenant, id)
	if err != nil || d.DeviceID != deviceID {
		return flotilla.Deployment{}, flotilla.Errorf(flotilla.ENotFound, "deployment %d of device %q not found", id, deviceID)
	}
	return d, nil
}

// CancelDeployment cancels a deployment: on the server if the device never
// fetched it, otherwise by asking the device through DDI's cancelAction.
func (c *Core) CancelDeployment(ctx context.Context, p Principal, tenant, deviceID string, id int64) (flotilla.Deployment, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Deployment{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Deployment{}, err
	}
	return c.RequestCancel(ctx, Ref{Tenant: tenant, DeviceID: deviceID, ID: id}, "canceled by an operator")
}

// ForceQuitDeployment cancels, on the server's word alone, a deployment
// whose device never confirmed a cancel (hawkBit's force quit).
func (c *Core) ForceQuitDeployment(ctx context.Context, p Principal, tenant, deviceID string, id int64) (flotilla.Deployment, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Deployment{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Deployment{}, err
	}
	return c.change(ctx, Ref{Tenant: tenant, DeviceID: deviceID, ID: id}, "", flotilla.ForceQuit)
}

// WindowLapsed reports whether a deployment's maintenance schedule has no
// window left.
func WindowLapsed(d flotilla.Deployment, now time.Time) bool {
	if d.Window == nil {
		return false
	}
	w, err := maintenance.Parse(*d.Window)
	return err == nil && w.Lapsed(now)
}

// ValidateWindowAt checks a maintenance window and that it opens within
// the next five years: a schedule that never does (February 30th) would
// hold its deployments forever.
func ValidateWindowAt(w flotilla.MaintenanceWindow, now time.Time) error {
	mw, err := maintenance.Parse(w)
	if err != nil {
		return err
	}
	if !mw.OpensWithin(now, maintenance.Horizon) {
		return flotilla.Errorf(flotilla.EInvalid, "maintenance window schedule %q has no window in the 5 years after %s; check its day and month fields", w.Schedule, now.Format(time.RFC3339))
	}
	return nil
}
