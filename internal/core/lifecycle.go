package core

import (
	"context"
	"errors"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// This file is the one owner of deployment state changes. Every change —
// a DDI device's feedback, a push node's report, an operator's or a
// superseding assignment's cancel, a lapsed window, a rollout's plan — is
// computed by the domain's transition functions (flotilla.ApplyFeedback,
// flotilla.RequestCancel, flotilla.Fail, ...), written through the store
// and announced here, once. Transports (deviceapi, pushd) only report
// what devices said.

// Report is what a transport learned from a device about one of its
// deployments, in DDI's terms.
type Report struct {
	Feedback flotilla.Feedback
	// Cancel marks an answer to a cancel request.
	Cancel bool
	// Version is the version the device says it now runs, when it says.
	Version string
	// NodeIP is the push node's host, for SPORE-shaped events.
	NodeIP string
}

// Ref names a deployment of a device.
type Ref struct {
	Tenant   string
	DeviceID string
	ID       int64
}

// RefOf returns d's reference.
func RefOf(d flotilla.Deployment) Ref { return Ref{Tenant: d.Tenant, DeviceID: d.DeviceID, ID: d.ID} }

// change applies a transition to one deployment in one transaction and
// announces the result; a change that kept the state is announced as
// progress, which the event hub batches. Steps held for the deployment
// (held.go) are written first, in the same change.
func (c *Core) change(ctx context.Context, ref Ref, nodeIP string, fn func(d flotilla.Deployment, now time.Time) (flotilla.Change, error)) (flotilla.Deployment, error) {
	held := c.takeHeld(ref)
	var before flotilla.DeploymentState
	d, err := c.Store.UpdateDeployment(ctx, ref.Tenant, ref.DeviceID, ref.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		before = d.State
		var earlier []flotilla.DeploymentEvent
		if len(held) > 0 {
			// Refused only by a deployment that ended meanwhile: the held
			// steps go, as late feedback would.
			if hc, err := flotilla.ApplySteps(d, held); err == nil {
				earlier = append(hc.Earlier, *hc.Event)
				d = hc.Deployment
				d.DeviceEvents += len(held)
			}
		}
		ch, err := fn(d, c.Now())
		if err == nil && len(earlier) > 0 {
			ch.Earlier = append(earlier, ch.Earlier...)
		}
		return ch, err
	})
	if err != nil {
		if len(held) > 0 && !flotilla.IsCode(err, flotilla.EGone) {
			c.writeHeld(ctx, ref, held) // answered already: keep them though this change was refused
		}
		return d, err
	}
	switch h := c.hooks.ActionEnded; {
	case working(before) && working(d.State):
		// What the device is told names a deployment by its id, type and
		// window, and a cancel by its state: a step between the working
		// states changes none of it.
	case h != nil && d.State.Terminal() && !before.Terminal() && d.Delivery != flotilla.DeliveryPush:
		h(d)
	default:
		c.InvalidateDevice(d.Tenant, d.DeviceID)
	}
	c.tell(d, nodeIP, d.State == before)
	return d, nil
}

// working reports whether a deployment in state s is under way on its
// device, with no cancel asked.
func working(s flotilla.DeploymentState) bool {
	switch s {
	case flotilla.StatePending, flotilla.StateDownloading, flotilla.StateDownloaded, flotilla.StateInstalling:
		return true
	}
	return false
}

// Report applies a device's report to its deployment. An intermediate
// step may be held and written with the next (held.go).
func (c *Core) Report(ctx context.Context, ref Ref, r Report) (flotilla.Deployment, error) {
	if err := c.checkFeedback(r.Feedback); err != nil {
		return flotilla.Deployment{}, err
	}
	if !r.Cancel && c.Config.HoldFeedback > 0 {
		if d, ok := c.hold(ref, r.Feedback, c.Now()); ok {
			return d, nil
		}
	}
	d, err := c.report(ctx, ref, r.NodeIP, r.Version, func(d flotilla.Deployment, now time.Time) (flotilla.Change, error) {
		return flotilla.ApplyFeedback(d, r.Feedback, r.Cancel, now)
	})
	if err == nil {
		c.synced(d)
	}
	return d, err
}

// errMovedOn stops a first step's write for a deployment already past it.
var errMovedOn = errors.New("deployment moved on")

// ReportFirstStep applies f only to a deployment still pending, and returns
// any other as it stands, unwritten. A push update's first step is reported
// by whoever learns first that the node took it: the start that asked, or a
// worker that claimed the update as soon as it was recorded and may already
// have taken it further, even to its end.
func (c *Core) ReportFirstStep(ctx context.Context, ref Ref, f flotilla.Feedback, nodeIP string) (flotilla.Deployment, error) {
	if err := c.checkFeedback(f); err != nil {
		return flotilla.Deployment{}, err
	}
	var current flotilla.Deployment
	d, err := c.report(ctx, ref, nodeIP, "", func(d flotilla.Deployment, now time.Time) (flotilla.Change, error) {
		if d.State != flotilla.StatePending {
			current = d
			return flotilla.Change{}, errMovedOn
		}
		return flotilla.ApplyFeedback(d, f, false, now)
	})
	if errors.Is(err, errMovedOn) {
		return current, nil
	}
	if err == nil {
		c.synced(d)
	}
	return d, err
}

// ReportSteps applies what a transport saw a device do since its last
// report — several steps, the last possibly final — as one change: one
// write, a history entry per step, one announcement of where it ended.
func (c *Core) ReportSteps(ctx context.Context, ref Ref, steps []flotilla.Step, version, nodeIP string) (flotilla.Deployment, error) {
	for _, st := range steps {
		if err := c.checkFeedback(st.Feedback); err != nil {
			return flotilla.Deployment{}, err
		}
	}
	return c.report(ctx, ref, nodeIP, version, func(d flotilla.Deployment, _ time.Time) (flotilla.Change, error) {
		return flotilla.ApplySteps(d, steps)
	})
}

// report applies a device's checked feedback with apply as one change
// within the status-entry quota, and records the version the device says
// it runs after an install.
func (c *Core) report(ctx context.Context, ref Ref, nodeIP, version string, apply func(flotilla.Deployment, time.Time) (flotilla.Change, error)) (flotilla.Deployment, error) {
	return c.change(ctx, ref, nodeIP, func(d flotilla.Deployment, now time.Time) (flotilla.Change, error) {
		ch, err := apply(d, now)
		if err != nil {
			return ch, err
		}
		if err := c.checkStatusEntries(d, ch); err != nil {
			return flotilla.Change{}, err
		}
		if ch.Installed && version != "" {
			ch.DeviceVersion = version
		}
		return ch, nil
	})
}

// checkFeedback refuses a feedback a device may not send: unknown
// values, or more or longer messages than the quotas allow.
func (c *Core) checkFeedback(f flotilla.Feedback) error {
	if err := flotilla.ValidateFeedback(f); err != nil {
		return err
	}
	return c.checkFeedbackSize(f)
}

// ReportProgress records how far a device got, without a state change or a
// history entry.
func (c *Core) ReportProgress(ctx context.Context, ref Ref, cnt, of int, nodeIP string) (flotilla.Deployment, error) {
	return c.change(ctx, ref, nodeIP, func(d flotilla.Deployment, now time.Time) (flotilla.Change, error) {
		return flotilla.ApplyProgress(d, cnt, of, now)
	})
}

// FailDeployment ends an open deployment as failed for a reason the server
// found; EGone if it already ended.
func (c *Core) FailDeployment(ctx context.Context, ref Ref, why, nodeIP string) (flotilla.Deployment, error) {
	return c.change(ctx, ref, nodeIP, func(d flotilla.Deployment, now time.Time) (flotilla.Change, error) {
		return flotilla.Fail(d, now, why)
	})
}

// RequestCancel cancels a deployment on the server's initiative: at once
// if the device never fetched it, otherwise through the device.
func (c *Core) RequestCancel(ctx context.Context, ref Ref, why string) (flotilla.Deployment, error) {
	return c.change(ctx, ref, "", func(d flotilla.Deployment, now time.Time) (flotilla.Change, error) {
		return flotilla.RequestCancel(d, now, why)
	})
}

// create records a new deployment, superseding what the device was doing,
// and announces both.
func (c *Core) create(ctx context.Context, d *flotilla.Deployment, detail, nodeIP string) error {
	sup, err := c.Store.CreateDeployment(ctx, d, flotilla.DeploymentEvent{At: d.CreatedAt, Source: flotilla.SourceServer, Details: []string{detail}})
	if err != nil {
		return err
	}
	c.announceSuperseded(d.Tenant, sup)
	c.announce(*d, nodeIP, false)
	return nil
}

// CreatePushDeployment records a push delivery under its update id before
// any node is contacted, superseding the device's open deployments.
func (c *Core) CreatePushDeployment(ctx context.Context, a flotilla.Artifact, tenant, deviceID, updateID, nodeIP string) (flotilla.Deployment, error) {
	if a.MultiModule() {
		return flotilla.Deployment{}, flotilla.Errorf(flotilla.EConflict, "release %s %s is made of several modules; push delivers releases of one file", a.Name, a.Version)
	}
	if err := c.checkSigned(ctx, tenant, a); err != nil {
		return flotilla.Deployment{}, err
	}
	now := c.Now()
	d := flotilla.Deployment{Tenant: tenant, DeviceID: deviceID, ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Attempt: 1, Type: flotilla.TypeForced, Delivery: flotilla.DeliveryPush, UpdateID: updateID, State: flotilla.StatePending,
		CreatedAt: now, UpdatedAt: now, StartedAt: &now}
	err := c.create(ctx, &d, "push update "+updateID+": "+a.Name+" "+a.Version, nodeIP)
	return d, err
}

// announceSuperseded tells watchers about deployments a new assignment or
// a rollout's start moved.
func (c *Core) announceSuperseded(tenant string, sup []store.Superseded) {
	for _, s := range sup {
		c.announce(flotilla.Deployment{ID: s.ID, Tenant: tenant, DeviceID: s.DeviceID, RolloutID: s.RolloutID, State: s.State}, "", false)
	}
}

// announce invalidates the device's cached poll answer and tells of the
// change.
func (c *Core) announce(d flotilla.Deployment, nodeIP string, progressOnly bool) {
	c.InvalidateDevice(d.Tenant, d.DeviceID)
	c.tell(d, nodeIP, progressOnly)
}

// tell publishes the change and runs the DeploymentChanged hook. nodeIP is
// the push node's host for SPORE-shaped events ("" for the device id);
// progressOnly marks a change of progress alone, which the hub batches.
func (c *Core) tell(d flotilla.Deployment, nodeIP string, progressOnly bool) {
	if nodeIP == "" {
		nodeIP = d.DeviceID
	}
	c.publishDeployment(d, nodeIP, progressOnly)
	if h := c.hooks.DeploymentChanged; h != nil {
		h(d)
	}
}

// DeploymentEvent is the event announcing d's change. Its time is the
// change's own (d.UpdatedAt, else now), so that every copy of it — the one
// a store sends with the commit, the one forwarded — is the same event.
func DeploymentEvent(d flotilla.Deployment, now time.Time) events.Event {
	if !d.UpdatedAt.IsZero() {
		now = d.UpdatedAt
	}
	return events.Event{Type: events.TypeDeployment, Tenant: d.Tenant, DeviceID: d.DeviceID, RolloutID: d.RolloutID,
		Time: now, Key: "deployment/" + d.DeviceID, Data: events.Message(DeploymentMessage(d))}
}

// publishDeployment sends the rich deployment event and, for rollouts, the
// SPORE gateway's rollout_progress and node_status_update shapes.
func (c *Core) publishDeployment(d flotilla.Deployment, nodeIP string, progressOnly bool) {
	now := c.Now()
	ev := DeploymentEvent(d, now)
	ev.Batch = progressOnly
	c.Events.Publish(ev)
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
		if !d.State.Active() {
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
