package core

import (
	"context"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
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
