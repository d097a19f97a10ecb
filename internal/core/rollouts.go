package core

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/events"
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
	// Start starts the rollout as soon as its snapshot is taken.
	Start   bool
	Channel string
	// DeviceIDs names the devices instead of selecting them by labels.
	DeviceIDs []string
}

// createWait bounds how long creating a rollout blocks the request; bigger
// snapshots finish in the background (status creating → ready).
const createWait = 5 * time.Second

// resolvePolicy returns the inline policy or the named one.
func (c *Core) resolvePolicy(ctx context.Context, tenant string, inline *flotilla.Policy, name string) (flotilla.Policy, error) {
	switch {
	case inline != nil && name != "":
		return flotilla.Policy{}, flotilla.Errorf(flotilla.EInvalid, "give either policy or policy_name, not both")
	case name != "":
		rec, err := c.Store.GetPolicy(ctx, tenant, name)
		if err != nil {
			return flotilla.Policy{}, err
		}
		return rec.Policy, nil
	case inline != nil:
		return *inline, inline.Validate()
	}
	return flotilla.Policy{}, nil
}

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
	waves := make([]flotilla.Wave, len(defs))
	for i, d := range defs {
		waves[i] = flotilla.Wave{Index: i, Name: d.Name, Size: d.Size}
	}
	if err := c.Store.MaterializeRollout(ctx, id, ids, assign, waves, c.Now()); err != nil {
		if flotilla.IsCode(err, flotilla.EConflict) {
			return nil // someone else took the snapshot
		}
		return err
	}
	r.Status = flotilla.RolloutReady
	c.publishRollout(r)
	if r.StartWhenReady {
		return c.startRollout(ctx, r.Tenant, id)
	}
	return nil
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
	for attempt := 0; ; attempt++ {
		now := c.Now()
		snap, err := c.Store.RolloutSnapshot(ctx, id, now, op == rollout.OpRetry)
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
	c.AfterRolloutChange(r, touched)
	c.WakeRollout(id)
	if op == rollout.OpResume {
		c.SweepChannel(r)
	}
	return r, waves, nil
}

// AfterRolloutChange invalidates and publishes what a rollout operation
// touched.
func (c *Core) AfterRolloutChange(r flotilla.Rollout, touched []store.Touched) {
	c.forgetProgress(r.ID)
	for _, t := range touched {
		c.announce(flotilla.Deployment{ID: t.ID, Tenant: r.Tenant, DeviceID: t.DeviceID, RolloutID: r.ID, Wave: t.Wave,
			State: t.State, ArtifactName: r.ArtifactName, ArtifactVersion: r.ArtifactVersion}, "", false)
	}
	c.publishRollout(r)
}

// progressEntry caches a rollout's finished and total device counts for
// rollout_progress messages.
type progressEntry struct {
	done, total int
	at          time.Time
	refreshing  bool
}

// rolloutProgress returns how many of a rollout's devices finished, read
// at most twice a second per rollout.
func (c *Core) rolloutProgress(tenant, id string) (int, int) {
	c.progressMu.Lock()
	e, ok := c.progress[id]
	// One caller refreshes; the others (a wave's worth of feedback arriving
	// at once) keep the previous figure rather than all reading the counts.
	if ok && (time.Since(e.at) < 500*time.Millisecond || e.refreshing) {
		c.progressMu.Unlock()
		return e.done, e.total
	}
	if c.progress == nil || len(c.progress) > 10000 {
		c.progress = map[string]progressEntry{}
	}
	e.refreshing = true
	c.progress[id] = e
	c.progressMu.Unlock()
	r, waves, err := c.Store.GetRollout(context.Background(), tenant, id)
	if err != nil {
		c.progressMu.Lock()
		if cur, ok := c.progress[id]; ok {
			cur.refreshing, cur.at = false, time.Now()
			c.progress[id] = cur
		}
		c.progressMu.Unlock()
		return e.done, e.total
	}
	e = progressEntry{total: r.Total, at: time.Now()}
	for _, w := range waves {
		for st, n := range w.Counts {
			if st.Terminal() {
				e.done += n
			}
		}
	}
	c.progressMu.Lock()
	if c.progress == nil || len(c.progress) > 10000 {
		c.progress = map[string]progressEntry{}
	}
	c.progress[id] = e
	c.progressMu.Unlock()
	return e.done, e.total
}

func (c *Core) forgetProgress(id string) {
	c.progressMu.Lock()
	delete(c.progress, id)
	c.progressMu.Unlock()
}

func (c *Core) publishRollout(r flotilla.Rollout) {
	c.Events.Publish(events.Event{Type: events.TypeRollout, Tenant: r.Tenant, RolloutID: r.ID, Time: c.Now(), Key: "rollout/" + r.ID,
		Data: events.Message(map[string]any{"type": events.TypeRollout, "rolloutId": r.ID, "name": r.Name, "status": r.Status, "reason": r.Reason})})
}

// PublishWave announces a wave transition.
func (c *Core) PublishWave(r flotilla.Rollout, wave int, status flotilla.WaveStatus, reason string) {
	c.Events.Publish(events.Event{Type: events.TypeWave, Tenant: r.Tenant, RolloutID: r.ID, Time: c.Now(),
		Data: events.Message(map[string]any{"type": events.TypeWave, "rolloutId": r.ID, "wave": wave, "status": status, "reason": reason})})
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

// Preview is what a rollout would cover.
type Preview struct {
	Total  int
	Waves  []rollout.WaveDef
	Sample [][]string // up to 10 device ids per wave
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
	return pv, nil
}

// PutPolicy creates or replaces a named policy.
func (c *Core) PutPolicy(ctx context.Context, p Principal, tenant, name string, pol flotilla.Policy) (flotilla.NamedPolicy, bool, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	if err := flotilla.ValidateName("policy", name); err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	if err := pol.Validate(); err != nil {
		return flotilla.NamedPolicy{}, false, err
	}
	now := c.Now()
	rec := flotilla.NamedPolicy{Tenant: tenant, Name: name, Policy: pol, CreatedAt: now, UpdatedAt: now}
	created, err := c.Store.PutPolicy(ctx, rec)
	if err != nil {
		return rec, false, err
	}
	rec, err = c.Store.GetPolicy(ctx, tenant, name)
	return rec, created, err
}

// GetPolicy returns a named policy.
func (c *Core) GetPolicy(ctx context.Context, p Principal, tenant, name string) (flotilla.NamedPolicy, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.NamedPolicy{}, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return flotilla.NamedPolicy{}, err
	}
	return c.Store.GetPolicy(ctx, tenant, name)
}

// ListPolicies lists named policies.
func (c *Core) ListPolicies(ctx context.Context, p Principal, tenant string) ([]flotilla.NamedPolicy, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return nil, err
	}
	return c.Store.ListPolicies(ctx, tenant)
}

// DeletePolicy removes a named policy; rollouts keep their copy.
func (c *Core) DeletePolicy(ctx context.Context, p Principal, tenant, name string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return err
	}
	return c.Store.DeletePolicy(ctx, tenant, name)
}

// ChannelRequest publishes an artifact version to a channel.
type ChannelRequest struct {
	Tenant          string
	Name            string
	ArtifactName    string
	ArtifactVersion string
	Selector        string // default "channel=NAME"
	Policy          *flotilla.Policy
	PolicyName      string
	Waves           int
}

// PutChannel creates or updates a channel. When its artifact version
// changes, a rollout to the channel's devices starts with the channel's
// policy, replacing the channel's previous rollout if it still runs.
func (c *Core) PutChannel(ctx context.Context, p Principal, req ChannelRequest) (flotilla.Channel, *flotilla.Rollout, bool, error) {
	tenant, err := p.TenantFor(req.Tenant)
	if err != nil {
		return flotilla.Channel{}, nil, false, err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return flotilla.Channel{}, nil, false, err
	}
	if err := flotilla.ValidateName("channel", req.Name); err != nil {
		return flotilla.Channel{}, nil, false, err
	}
	sel := req.Selector
	if sel == "" {
		sel = "channel=" + req.Name
	}
	if _, err := label.Parse(sel); err != nil {
		return flotilla.Channel{}, nil, false, err
	}
	pol, err := c.resolvePolicy(ctx, tenant, req.Policy, req.PolicyName)
	if err != nil {
		return flotilla.Channel{}, nil, false, err
	}
	a, err := c.Store.GetArtifact(ctx, tenant, req.ArtifactName, req.ArtifactVersion)
	if err != nil {
		return flotilla.Channel{}, nil, false, err
	}
	if req.Waves <= 0 {
		req.Waves = 1
	}
	now := c.Now()
	prev, err := c.Store.GetChannel(ctx, tenant, req.Name)
	exists := err == nil
	if err != nil && !flotilla.IsCode(err, flotilla.ENotFound) {
		return flotilla.Channel{}, nil, false, err
	}
	rec := flotilla.Channel{Tenant: tenant, Name: req.Name, ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Selector: sel, Policy: pol, PolicyName: req.PolicyName, Waves: req.Waves, RolloutID: prev.RolloutID, CreatedAt: now, UpdatedAt: now}
	var started *flotilla.Rollout
	if !exists || prev.ArtifactID != a.ID {
		if exists && prev.RolloutID != "" {
			if r, _, err := c.Store.GetRollout(ctx, tenant, prev.RolloutID); err == nil && !r.Status.Finished() {
				if _, _, err := c.ChangeRollout(ctx, p, tenant, prev.RolloutID, rollout.OpAbort); err != nil && !flotilla.IsCode(err, flotilla.EConflict) {
					return flotilla.Channel{}, nil, false, err
				}
			}
		}
		r, _, err := c.CreateRollout(ctx, p, RolloutRequest{Tenant: tenant, Name: fmt.Sprintf("channel %s → %s %s", req.Name, a.Name, a.Version),
			ArtifactName: a.Name, ArtifactVersion: a.Version, Selector: sel, Waves: req.Waves, Policy: &pol, Start: true, Channel: req.Name})
		if err != nil {
			return flotilla.Channel{}, nil, false, err
		}
		rec.RolloutID, started = r.ID, &r
	}
	created, err := c.Store.PutChannel(ctx, rec)
	c.forgetChannels(tenant)
	if err != nil {
		return flotilla.Channel{}, nil, false, err
	}
	rec, err = c.Store.GetChannel(ctx, tenant, req.Name)
	return rec, started, created, err
}

// GetChannel returns a channel.
func (c *Core) GetChannel(ctx context.Context, p Principal, tenant, name string) (flotilla.Channel, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Channel{}, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return flotilla.Channel{}, err
	}
	return c.Store.GetChannel(ctx, tenant, name)
}

// ListChannels lists a tenant's channels.
func (c *Core) ListChannels(ctx context.Context, p Principal, tenant string) ([]flotilla.Channel, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeRolloutsRead); err != nil {
		return nil, err
	}
	return c.Store.ListChannels(ctx, tenant)
}

// DeleteChannel removes a channel; its rollouts stay.
func (c *Core) DeleteChannel(ctx context.Context, p Principal, tenant, name string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		return err
	}
	defer c.forgetChannels(tenant)
	return c.Store.DeleteChannel(ctx, tenant, name)
}
