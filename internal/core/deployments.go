package core

import (
	"context"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/store"
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
	sup, err := c.Store.CreateDeployment(ctx, d, flotilla.DeploymentEvent{At: now, Source: "server", Details: []string{detail}})
	if err != nil {
		return err
	}
	c.afterSupersede(d.Tenant, sup)
	c.DeploymentChanged(*d)
	return nil
}

// afterSupersede tells watchers about deployments a new assignment moved.
func (c *Core) afterSupersede(tenant string, sup []store.Superseded) {
	for _, s := range sup {
		c.DeploymentChanged(flotilla.Deployment{ID: s.ID, Tenant: tenant, DeviceID: s.DeviceID, RolloutID: s.RolloutID, State: s.State})
	}
}

// DeploymentChanged invalidates cached device answers and publishes the
// change. Every write that touches a deployment ends here.
func (c *Core) DeploymentChanged(d flotilla.Deployment) {
	c.deploymentChanged(d, false)
}

// deploymentChanged publishes; progressOnly marks an update that changed
// only the progress, which the hub batches.
func (c *Core) deploymentChanged(d flotilla.Deployment, progressOnly bool) {
	c.InvalidateDevice(d.Tenant, d.DeviceID)
	c.publishDeployment(d, d.DeviceID, progressOnly)
	for _, fn := range c.deploymentHooks {
		fn(d)
	}
}

// publishDeployment sends the rich deployment event and, for rollouts, the
// SPORE gateway's rollout_progress and node_status_update shapes. nodeIP is
// the node's address where known (push), else the device id.
func (c *Core) publishDeployment(d flotilla.Deployment, nodeIP string, progressOnly bool) {
	now := c.Now()
	c.Events.Publish(events.Event{Type: events.TypeDeployment, Tenant: d.Tenant, DeviceID: d.DeviceID, RolloutID: d.RolloutID,
		Time: now, Key: "deployment/" + d.DeviceID, Batch: progressOnly, Data: events.Message(DeploymentMessage(d))})
	if d.RolloutID == "" {
		return
	}
	done, total := c.rolloutProgress(d.Tenant, d.RolloutID)
	pct := 0
	if total > 0 {
		pct = done * 100 / total
	}
	c.Events.Publish(events.Event{Type: events.TypeRolloutProgress, Tenant: d.Tenant, DeviceID: d.DeviceID, RolloutID: d.RolloutID,
		Time: now, Key: "progress/" + d.DeviceID, Batch: progressOnly, Data: events.Message(map[string]any{
			"type": events.TypeRolloutProgress, "rolloutId": d.RolloutID, "nodeIp": nodeIP, "deviceId": d.DeviceID,
			"status": SporeStatus(d.State), "state": d.State, "current": done, "total": total, "progress": pct,
			"timestamp": now.Format(time.RFC3339)})})
	if !progressOnly {
		status := "updating"
		if !d.State.InFlight() {
			status = "online"
		}
		c.Events.Publish(events.Event{Type: events.TypeNodeStatusUpdate, Tenant: d.Tenant, DeviceID: d.DeviceID, RolloutID: d.RolloutID,
			Time: now, Key: "node/" + d.DeviceID, Data: events.Message(map[string]any{
				"type": events.TypeNodeStatusUpdate, "nodeIp": nodeIP, "deviceId": d.DeviceID, "status": status,
				"timestamp": now.Format(time.RFC3339)})})
	}
}

// SporeStatus maps a deployment state to the SPORE gateway's rollout
// status vocabulary (updating_labels, uploading, completed, failed) where
// one fits, and to Flotilla's own state otherwise.
func SporeStatus(s flotilla.DeploymentState) string {
	switch s {
	case flotilla.StatePending, flotilla.StateDownloading, flotilla.StateDownloaded:
		return "uploading"
	case flotilla.StateSucceeded:
		return "completed"
	case flotilla.StateFailed, flotilla.StateTimedOut, flotilla.StateRejected:
		return "failed"
	}
	return string(s)
}

// OnDeploymentChange registers fn to run after every deployment change,
// e.g. to wake the rollout scheduler. fn must not block.
func (c *Core) OnDeploymentChange(fn func(flotilla.Deployment)) {
	c.deploymentHooks = append(c.deploymentHooks, fn)
}

// DeploymentMessage is the event payload of a deployment change.
func DeploymentMessage(d flotilla.Deployment) map[string]any {
	m := map[string]any{
		"type": events.TypeDeployment, "deploymentId": d.ID, "deviceId": d.DeviceID, "state": d.State,
	}
	if d.RolloutID != "" {
		m["rolloutId"] = d.RolloutID
		m["wave"] = d.Wave
	}
	if d.ProgressOf > 0 {
		m["progress"] = d.ProgressCnt * 100 / d.ProgressOf
	}
	if d.ArtifactName != "" {
		m["artifact"] = map[string]string{"name": d.ArtifactName, "version": d.ArtifactVersion}
	}
	return m
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
	d, err := c.Store.UpdateDeployment(ctx, tenant, deviceID, id, func(d flotilla.Deployment) (store.DeploymentChange, error) {
		return CancelChange(d, c.Now(), "canceled by an operator")
	})
	if err != nil {
		return flotilla.Deployment{}, err
	}
	c.DeploymentChanged(d)
	return d, nil
}

// CancelChange computes a server-initiated cancel: deployments the device
// never fetched end at once, others wait for the device.
func CancelChange(d flotilla.Deployment, now time.Time, why string) (store.DeploymentChange, error) {
	switch {
	case d.State.Terminal():
		return store.DeploymentChange{}, flotilla.Errorf(flotilla.EConflict, "deployment %d is already %s", d.ID, d.State)
	case d.State == flotilla.StateCancelRequested:
		return store.DeploymentChange{Deployment: d}, nil
	case d.State == flotilla.StateScheduled || (d.State == flotilla.StatePending && d.RetrievedAt == nil):
		d.State, d.FinishedAt = flotilla.StateCanceled, &now
	default:
		d.PrevState, d.State = d.State, flotilla.StateCancelRequested
	}
	d.UpdatedAt, d.Message = now, why
	return store.DeploymentChange{Deployment: d, Event: &flotilla.DeploymentEvent{At: now, Source: "server", Details: []string{why}}}, nil
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

// ValidateWindowAt checks a maintenance window and that it still has a
// window to come.
func ValidateWindowAt(w flotilla.MaintenanceWindow, now time.Time) error {
	mw, err := maintenance.Parse(w)
	if err != nil {
		return err
	}
	if mw.Lapsed(now) {
		return flotilla.Errorf(flotilla.EInvalid, "maintenance window schedule %q has no window after %s", w.Schedule, now.Format(time.RFC3339))
	}
	return nil
}

// PushDeploymentChanged publishes a push deployment's change with the
// node's address in the SPORE-shaped events.
func (c *Core) PushDeploymentChanged(d flotilla.Deployment, nodeIP string, progressOnly bool) {
	c.InvalidateDevice(d.Tenant, d.DeviceID)
	c.publishDeployment(d, nodeIP, progressOnly)
	for _, fn := range c.deploymentHooks {
		fn(d)
	}
}

// RecordDeviceVersion stores the version a push node reports.
func (c *Core) RecordDeviceVersion(ctx context.Context, d flotilla.Deployment, version string) {
	if version == "" {
		return
	}
	if _, err := c.Store.UpdateDevice(ctx, d.Tenant, d.DeviceID, store.DevicePatch{Version: &version}, c.Now()); err != nil {
		c.Log.Warn("record device version", "device", d.DeviceID, "err", err)
	}
}
