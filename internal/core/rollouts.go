package core

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
	"github.com/flotilla-ota/flotilla/rollout"
)

// RolloutRequest creates a rollout.
type RolloutRequest struct {
	Tenant          string
	Name            string
	ArtifactName    string
	ArtifactVersion string
	Selector        string
	Waves           int
	Groups          []flotilla.WaveSpec
	Type            string
	ForceAt         *time.Time
	Policy          *flotilla.Policy
	PolicyName      string
	Window          *flotilla.MaintenanceWindow
	Delivery        string
	// Draft keeps the rollout editable: no snapshot until it starts.
	Draft bool
	// AllowEmpty accepts a selector that matches no device now (a
	// channel's release reaches devices that join later); otherwise that
	// is a conflict, not a rollout that "completes" at 0 of 0.
	AllowEmpty bool
	// Start starts the rollout as soon as its snapshot is taken.
	Start   bool
	Channel string
	// DeviceIDs names the devices instead of selecting them by labels.
	DeviceIDs []string
}

// createWait bounds how long creating a rollout blocks the request; bigger
// snapshots finish in the background (status creating → ready).
const createWait = 5 * time.Second

// CreateRollout validates a rollout, records it and takes its device
// snapshot (in the background when that takes long).
func (c *Core) CreateRollout(ctx context.Context, p Principal, req RolloutRequest) (flotilla.Rollout, []flotilla.Wave, error) {
	tenant, err := p.TenantFor(req.Tenant)
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return flotilla.Rollout{}, nil, err
	}
	r, err := c.validateRollout(ctx, tenant, req)
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	if err := c.Store.CreateRollout(ctx, &r); err != nil {
		return flotilla.Rollout{}, nil, err
	}
	c.publishRollout(r)
	if !req.Draft {
		done := make(chan error, 1)
		go func() { done <- c.MaterializeRollout(context.WithoutCancel(ctx), r.ID) }()
		select {
		case err := <-done:
			if err != nil {
				c.Log.Error("create rollout", "rollout", r.ID, "err", err)
			}
		case <-time.After(createWait):
		}
	}
	r, waves, err := c.Store.GetRollout(ctx, tenant, r.ID)
	return r, waves, err
}

func (c *Core) validateRollout(ctx context.Context, tenant string, req RolloutRequest) (flotilla.Rollout, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" || len(name) > 128 {
		return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "name is required and at most 128 characters")
	}
	if req.ArtifactName == "" || req.ArtifactVersion == "" {
		return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "artifact.name and artifact.version are required")
	}
	a, err := c.Store.GetArtifact(ctx, tenant, req.ArtifactName, req.ArtifactVersion)
	if err != nil {
		return flotilla.Rollout{}, err
	}
	if err := c.checkSigned(ctx, tenant, a); err != nil {
		return flotilla.Rollout{}, err
	}
	if _, err := label.Parse(req.Selector); err != nil {
		return flotilla.Rollout{}, err
	}
	if len(req.DeviceIDs) > 0 {
		if req.Selector != "" {
			return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "give either selector or devices, not both")
		}
		if len(req.DeviceIDs) > 100000 {
			return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "at most 100000 devices may be named; use a selector")
		}
		for _, id := range req.DeviceIDs {
			if _, err := c.Store.GetDevice(ctx, tenant, id); err != nil {
				return flotilla.Rollout{}, err
			}
		}
	}
	if len(req.DeviceIDs) == 0 && !req.Draft && !req.AllowEmpty {
		sel, _ := label.Parse(req.Selector)
		some, err := c.Store.ListDevices(ctx, tenant, store.DeviceQuery{Selector: sel, Limit: 1})
		if err != nil {
			return flotilla.Rollout{}, err
		}
		if len(some) == 0 {
			return flotilla.Rollout{}, flotilla.Errorf(flotilla.EConflict, "selector %q matches no device: check it with POST /api/v1/rollouts/preview, or set allow_empty to create the rollout anyway", req.Selector)
		}
	}
	if req.Waves != 0 && len(req.Groups) > 0 {
		return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "give either waves or groups, not both")
	}
	if req.Waves < 0 || req.Waves > 1000 {
		return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "waves must be from 1 to 1000")
	}
	if _, _, err := rollout.Split(nil, req.Waves, req.Groups); err != nil {
		return flotilla.Rollout{}, err
	}
	typ, err := flotilla.ParseDeploymentType(req.Type)
	if err != nil {
		return flotilla.Rollout{}, err
	}
	if typ == flotilla.TypeTimeForced && req.ForceAt == nil {
		return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "a timeforced rollout needs force_at")
	}
	if req.Window != nil {
		if err := ValidateWindowAt(*req.Window, c.Now()); err != nil {
			return flotilla.Rollout{}, err
		}
	}
	policy, err := c.resolvePolicy(ctx, tenant, req.Policy, req.PolicyName)
	if err != nil {
		return flotilla.Rollout{}, err
	}
	delivery := req.Delivery
	if delivery == "" {
		delivery = flotilla.DeliveryPull
	}
	if delivery != flotilla.DeliveryPull && delivery != flotilla.DeliveryPush {
		return flotilla.Rollout{}, flotilla.Errorf(flotilla.EInvalid, "delivery %q is invalid: use pull or push", delivery)
	}
	if delivery == flotilla.DeliveryPush && a.MultiModule() {
		return flotilla.Rollout{}, flotilla.Errorf(flotilla.EConflict, "release %s %s is made of several modules; push delivers releases of one file", a.Name, a.Version)
	}
	waves := req.Waves
	if waves == 0 && len(req.Groups) == 0 {
		waves = 1
	}
	now := c.Now()
	status := flotilla.RolloutCreating
	if req.Draft {
		status = flotilla.RolloutDraft
	}
	return flotilla.Rollout{
		ID: NewID("r-"), Tenant: tenant, Name: name, ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Selector: req.Selector, Type: typ, ForceAt: req.ForceAt, Window: req.Window, Policy: policy, PolicyName: req.PolicyName,
		Delivery: delivery, Channel: req.Channel, WaveCount: waves, Groups: req.Groups, Status: status, StartWhenReady: req.Start,
		DeviceIDs: req.DeviceIDs,
		CreatedAt: now, UpdatedAt: now,
	}, nil
}

// MaterializeRollout takes a creating rollout's device snapshot, splits it
// into waves and, if asked, starts it.
func (c *Core) MaterializeRollout(ctx context.Context, id string) error {
	r, _, err := c.Store.GetRollout(ctx, "", id)
	if err != nil {
		return err
	}
	if r.Status != flotilla.RolloutCreating {
		return nil
	}
	done := false
	if len(r.DeviceIDs) == 0 && len(r.Groups) == 0 {
		done, err = c.Store.MaterializeEvenRollout(ctx, id, r.WaveCount, c.Now())
	}
	if !done && err == nil {
		err = c.splitRollout(ctx, r)
	}
	if flotilla.IsCode(err, flotilla.EConflict) {
		return nil // someone else took the snapshot
	}
	if err != nil {
		return err
	}
	r.Status = flotilla.RolloutReady
	c.publishRollout(r)
	if r.StartWhenReady {
		return c.startRollout(ctx, r.Tenant, id)
	}
	return nil
}

// splitRollout reads a rollout's members, splits them into waves and
// stores the snapshot.
func (c *Core) splitRollout(ctx context.Context, r flotilla.Rollout) error {
	members, err := c.Store.RolloutMembers(ctx, r.Tenant, r.Selector)
	if err != nil {
		return err
	}
	if len(r.DeviceIDs) > 0 {
		named := map[string]bool{}
		for _, id := range r.DeviceIDs {
			named[id] = true
		}
		members = slices.DeleteFunc(members, func(m rollout.Member) bool { return !named[m.ID] })
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	assign, defs, err := rollout.Split(members, r.WaveCount, r.Groups)
	if err != nil {
		return err
	}
	return c.Store.MaterializeRollout(ctx, r.ID, ids, assign, rollout.Waves(defs), c.Now())
}

// StartRollout starts a ready rollout (a draft takes its snapshot first).
func (c *Core) StartRollout(ctx context.Context, p Principal, tenant, id string) (flotilla.Rollout, []flotilla.Wave, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return flotilla.Rollout{}, nil, err
	}
	r, _, err := c.Store.GetRollout(ctx, tenant, id)
	if err != nil {
		return r, nil, err
	}
	switch r.Status {
	case flotilla.RolloutDraft:
		if err := c.Store.PromoteDraft(ctx, tenant, id, true, c.Now()); err != nil {
			return r, nil, err
		}
		if err := c.MaterializeRollout(ctx, id); err != nil {
			return r, nil, err
		}
	case flotilla.RolloutReady:
		if err := c.startRollout(ctx, tenant, id); err != nil {
			return r, nil, err
		}
	default:
		return r, nil, flotilla.Errorf(flotilla.EConflict, "rollout %s is %s; only a draft or ready rollout can start", id, r.Status)
	}
	return c.Store.GetRollout(ctx, tenant, id)
}

func (c *Core) startRollout(ctx context.Context, tenant, id string) error {
	sup, err := c.Store.StartRollout(ctx, tenant, id, c.Now())
	if err != nil {
		return err
	}
	c.announceSuperseded(tenant, sup)
	r, _, err := c.Store.GetRollout(ctx, tenant, id)
	if err == nil {
		c.publishRollout(r)
	}
	c.WakeRollout(id)
	return nil
}

// WakeRollout asks the scheduler to look at a rollout now.
func (c *Core) WakeRollout(id string) {
	if h := c.hooks.WakeRollout; h != nil {
		h(id)
	}
}

// ChangeRollout applies an operator action — pause, resume, abort, retry or
// next-wave — computed by rollout.Operate and applied like a plan.
func (c *Core) ChangeRollout(ctx context.Context, p Principal, tenant, id string, op rollout.Op) (flotilla.Rollout, []flotilla.Wave, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return flotilla.Rollout{}, nil, err
	}
	if !slices.Contains(rollout.Ops, op) {
		return flotilla.Rollout{}, nil, flotilla.Errorf(flotilla.EInvalid, "unknown rollout action %q", op)
	}
	var touched []store.Touched
	var began time.Time
	for attempt := 0; ; attempt++ {
		now := c.Now()
		snap, err := c.Store.RolloutSnapshot(ctx, id, now, store.SnapshotReads{Failed: op == rollout.OpRetry, NextWave: true})
		if err == nil && snap.Rollout.Tenant != tenant {
			err = flotilla.Errorf(flotilla.ENotFound, "rollout %q not found", id)
		}
		if err != nil {
			return flotilla.Rollout{}, nil, err
		}
		actions, err := rollout.Operate(snap, op, now)
		if err != nil {
			return snap.Rollout, nil, err
		}
		began = time.Now()
		touched, err = c.Store.ApplyRolloutPlan(ctx, id, "", snap.Rollout.Version, actions, now)
		if flotilla.IsCode(err, flotilla.EConflict) && attempt < 10 {
			continue // the scheduler got there first; look again
		}
		if err != nil {
			return snap.Rollout, nil, fmt.Errorf("%s rollout %s: %w", op, id, err)
		}
		break
	}
	r, waves, err := c.Store.GetRollout(ctx, tenant, id)
	if err != nil {
		return r, nil, err
	}
	c.AfterRolloutChange(r, touched, began)
	c.WakeRollout(id)
	if op == rollout.OpResume {
		c.SweepChannel(r)
	}
	return r, waves, nil
}

// GetRollout returns a rollout with per-wave counts.
func (c *Core) GetRollout(ctx context.Context, p Principal, tenant, id string) (flotilla.Rollout, []flotilla.Wave, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return flotilla.Rollout{}, nil, err
	}
	return c.Store.GetRollout(ctx, tenant, id)
}

// ListRollouts lists a tenant's rollouts, newest first.
func (c *Core) ListRollouts(ctx context.Context, p Principal, tenant string, f flotilla.RolloutFilter) ([]flotilla.Rollout, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return nil, err
	}
	return c.Store.ListRollouts(ctx, tenant, f)
}

// DeleteRollout removes a rollout that is not in progress.
func (c *Core) DeleteRollout(ctx context.Context, p Principal, tenant, id string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return err
	}
	return c.Store.DeleteRollout(ctx, tenant, id)
}

// RolloutDevices lists a rollout's devices with their current attempt.
func (c *Core) RolloutDevices(ctx context.Context, p Principal, tenant, id string, f flotilla.RolloutDeviceFilter) ([]flotilla.RolloutDevice, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return nil, err
	}
	return c.Store.ListRolloutDevices(ctx, tenant, id, f)
}

// RolloutRuns lists a rollout's wave runs.
func (c *Core) RolloutRuns(ctx context.Context, p Principal, tenant, id string) ([]flotilla.RolloutRun, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return nil, err
	}
	return c.Store.ListRolloutRuns(ctx, tenant, id)
}

// HistoryPoint is the state of a rollout at one moment: how many of its
// devices had finished, succeeded and failed by then.
type HistoryPoint struct {
	At                          time.Time
	Finished, Succeeded, Failed int
}

// RolloutHistory is a rollout's progress over time from its start, drawn
// from when its devices finished: the same curve whenever it is looked at.
func (c *Core) RolloutHistory(ctx context.Context, p Principal, tenant, id string, points int) (flotilla.Rollout, []HistoryPoint, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return flotilla.Rollout{}, nil, err
	}
	r, _, err := c.Store.GetRollout(ctx, tenant, id)
	if err != nil {
		return r, nil, err
	}
	fin, err := c.Store.RolloutFinishes(ctx, tenant, id)
	if err != nil || r.StartedAt == nil {
		return r, nil, err
	}
	start, end := *r.StartedAt, c.Now()
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	if n := len(fin); n > 0 && fin[n-1].At.After(end) {
		end = fin[n-1].At
	}
	points = min(max(points, 2), 500)
	step := end.Sub(start) / time.Duration(points-1)
	out := make([]HistoryPoint, 0, points)
	var cur HistoryPoint
	k := 0
	for i := 0; i < points; i++ {
		at := start.Add(step * time.Duration(i))
		if i == points-1 {
			at = end
		}
		for ; k < len(fin) && !fin[k].At.After(at); k++ {
			cur.Finished++
			switch {
			case fin[k].State == flotilla.StateSucceeded:
				cur.Succeeded++
			case fin[k].State.Failure():
				cur.Failed++
			}
		}
		cur.At = at
		out = append(out, cur)
	}
	return r, out, nil
}

// Preview is what a rollout would cover.
type Preview struct {
	Total  int
	Waves  []rollout.WaveDef
	Sample [][]string // up to 10 device ids per wave
	// Warnings say what would surprise: empty waves, no device at all.
	Warnings []string
}

// PreviewRollout computes the matching devices and the wave split without
// creating anything.
func (c *Core) PreviewRollout(ctx context.Context, p Principal, tenant, selector string, waves int, groups []flotilla.WaveSpec) (Preview, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return Preview{}, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return Preview{}, err
	}
	if waves == 0 && len(groups) == 0 {
		waves = 1
	}
	members, err := c.Store.RolloutMembers(ctx, tenant, selector)
	if err != nil {
		return Preview{}, err
	}
	assign, defs, err := rollout.Split(members, waves, groups)
	if err != nil {
		return Preview{}, err
	}
	pv := Preview{Total: len(members), Waves: defs, Sample: make([][]string, len(defs))}
	for i, w := range assign {
		if len(pv.Sample[w]) < 10 {
			pv.Sample[w] = append(pv.Sample[w], members[i].ID)
		}
	}
	pv.Warnings = previewWarnings(len(members), defs)
	return pv, nil
}

// previewWarnings explains a split that would surprise: no device, or
// waves left empty (2 devices in 5 waves).
func previewWarnings(total int, defs []rollout.WaveDef) []string {
	if total == 0 {
		return []string{"the selector matches no device: creating the rollout would be refused (unless allow_empty)"}
	}
	var empty []string
	for i, d := range defs {
		if d.Size == 0 {
			empty = append(empty, fmt.Sprint(i+1))
		}
	}
	switch len(empty) {
	case 0:
		return nil
	case 1:
		return []string{fmt.Sprintf("wave %s would have no device (%d devices in %d waves): use fewer waves", empty[0], total, len(defs))}
	}
	return []string{fmt.Sprintf("waves %s would have no device (%d devices in %d waves): use fewer waves", strings.Join(empty, ", "), total, len(defs))}
}
