package core

import (
	"context"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// AfterRolloutChange invalidates and publishes what a rollout operation
// touched. began is a moment before the operation was written, on the
// process's clock (time.Now, not c.Now).
func (c *Core) AfterRolloutChange(r flotilla.Rollout, touched []store.Touched, began time.Time) {
	c.forgetProgress(r.ID)
	for _, t := range touched {
		d := flotilla.Deployment{ID: t.ID, Tenant: r.Tenant, DeviceID: t.DeviceID, RolloutID: r.ID, Wave: t.Wave, State: t.State,
			ArtifactName: r.ArtifactName, ArtifactVersion: r.ArtifactVersion, Type: t.Type, ForceAt: t.ForceAt, Window: t.Window, Delivery: t.Delivery}
		if h := c.hooks.ActionStarted; h != nil && t.State == flotilla.StatePending && t.Delivery != flotilla.DeliveryPush {
			c.closeHold(r.Tenant, t.DeviceID)
			h(d, began)
			c.tell(d, "", false)
			continue
		}
		c.announce(d, "", false)
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
