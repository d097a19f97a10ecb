package core

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
	"github.com/flotilla-ota/flotilla/rollout"
)

// channelCacheTTL bounds how long a replica acts on a channel list another
// replica has since changed (its own changes drop the cache at once).
const channelCacheTTL = 5 * time.Second

type channelCache struct {
	mu sync.Mutex
	m  map[string]channelList
}

type channelList struct {
	at  time.Time
	chs []channelEntry
}

// channelEntry is a channel with its selector parsed once, not on every
// device report.
type channelEntry struct {
	flotilla.Channel
	sel label.Selector
}

func (c *Core) tenantChannels(ctx context.Context, tenant string) ([]channelEntry, error) {
	c.channels.mu.Lock()
	l, ok := c.channels.m[tenant]
	c.channels.mu.Unlock()
	if ok && time.Since(l.at) < channelCacheTTL {
		return l.chs, nil
	}
	recs, err := c.Store.ListChannels(ctx, tenant)
	if err != nil {
		return nil, err
	}
	chs := make([]channelEntry, 0, len(recs))
	for _, r := range recs {
		sel, err := label.Parse(r.Selector)
		if err != nil {
			continue // validated when stored; an unparsable one matches nothing
		}
		chs = append(chs, channelEntry{r, sel})
	}
	c.channels.mu.Lock()
	if c.channels.m == nil {
		c.channels.m = map[string]channelList{}
	}
	c.channels.m[tenant] = channelList{at: time.Now(), chs: chs}
	c.channels.mu.Unlock()
	return chs, nil
}

func (c *Core) forgetChannels(tenant string) {
	c.channels.mu.Lock()
	delete(c.channels.m, tenant)
	c.channels.mu.Unlock()
}

// catchUp gives a device that joined a channel after its release — or
// told us only now what it runs — the channel's version, as Nebraska does:
// a device on "stable" runs what "stable" points at. It runs when a
// device's labels or reported version change, and only assigns when
//   - the device runs a known version other than the channel's,
//   - the channel's rollout is running or completed (a paused, aborted or
//     partial release does not spread),
//   - the device has no open deployment and never had this artifact (a
//     failed install is not retried behind the operator's back).
//
// Push devices are left to rollouts. Errors are logged, never returned: the
// device's own request has succeeded.
func (c *Core) catchUp(ctx context.Context, d flotilla.Device) {
	if d.Version == "" || d.Address != "" {
		return
	}
	chs, err := c.tenantChannels(ctx, d.Tenant)
	if err != nil {
		c.Log.Warn("channel catch-up: list channels", "tenant", d.Tenant, "err", err)
		return
	}
	for _, ch := range chs {
		if ch.ArtifactID == 0 || ch.ArtifactVersion == d.Version {
			continue
		}
		if !ch.sel.Matches(d.Labels) {
			continue
		}
		if err := c.catchUpTo(ctx, d, ch.Channel); err != nil {
			c.Log.Warn("channel catch-up", "tenant", d.Tenant, "device", d.ID, "channel", ch.Name, "err", err)
		}
		return // one channel per device: the first that matches
	}
}

func (c *Core) catchUpTo(ctx context.Context, d flotilla.Device, ch flotilla.Channel) error {
	typ := flotilla.TypeForced
	if ch.RolloutID != "" {
		r, _, err := c.Store.GetRollout(ctx, d.Tenant, ch.RolloutID)
		if err != nil && !flotilla.IsCode(err, flotilla.ENotFound) {
			return err
		}
		if err == nil {
			if r.Status != flotilla.RolloutRunning && r.Status != flotilla.RolloutCompleted {
				return nil
			}
			if r.Type != "" {
				typ = r.Type
			}
		}
	}
	if typ == flotilla.TypeTimeForced {
		typ = flotilla.TypeSoft // its force time belonged to the release
	}
	unlock := c.locks.lock("catch-up/" + d.Tenant + "/" + d.ID)
	defer unlock()
	had, err := c.Store.ArtifactAssigned(ctx, d.Tenant, d.ID, ch.ArtifactID)
	if err != nil || had {
		return err
	}
	open, _, err := c.Store.DeviceActions(ctx, d.Tenant, d.ID)
	if err != nil || len(open) > 0 {
		return err
	}
	a, err := c.Store.GetArtifactByID(ctx, d.Tenant, ch.ArtifactID)
	if err != nil {
		return err
	}
	dep := flotilla.Deployment{Tenant: d.Tenant, DeviceID: d.ID, Type: typ}
	if err := c.assign(ctx, &dep, a, "channel "+ch.Name+": catching up from "+d.Version+" to "+a.Name+" "+a.Version); err != nil {
		return err
	}
	c.Log.Info("channel catch-up", "tenant", d.Tenant, "device", d.ID, "channel", ch.Name, "version", a.Version)
	return nil
}

// SweepChannel catches up, in the background, every device of r's channel
// that the event-driven catch-up could not serve while r was not running
// (joined while it was paused, say). It runs when a channel's rollout
// resumes or completes; a rollout no longer the channel's current one is
// ignored.
func (c *Core) SweepChannel(r flotilla.Rollout) {
	if r.Channel == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		ch, err := c.Store.GetChannel(ctx, r.Tenant, r.Channel)
		if err != nil || ch.RolloutID != r.ID {
			return
		}
		sel, err := label.Parse(ch.Selector)
		if err != nil {
			return
		}
		c.forgetChannels(r.Tenant)
		for after := ""; ; {
			page, err := c.Store.ListDevices(ctx, r.Tenant, store.DeviceQuery{Selector: sel, AfterID: after, Limit: 1000})
			if err != nil {
				c.Log.Warn("channel sweep", "tenant", r.Tenant, "channel", r.Channel, "err", err)
				return
			}
			for _, d := range page {
				c.catchUp(ctx, d)
			}
			if len(page) < 1000 {
				return
			}
			after = page[len(page)-1].ID
		}
	}()
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
	if err := c.checkSigned(ctx, tenant, a); err != nil {
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
			ArtifactName: a.Name, ArtifactVersion: a.Version, Selector: sel, Waves: req.Waves, Policy: &pol, Start: true, Channel: req.Name, AllowEmpty: true})
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
