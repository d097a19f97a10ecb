package core

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// seenBatch collects "device was seen" marks so that polls do not write to
// the database; FlushSeen writes them in one transaction.
type seenBatch struct {
	mu      sync.Mutex
	pending map[[2]string]time.Time
	// recent holds devices this replica saw within the offline threshold,
	// whose online state needs no database check.
	recent map[[2]string]time.Time
	// swept is the end of the last offline sweep.
	swept time.Time
}

// seenResolution is how stale a device's stored last_seen_at may get while
// it keeps polling: a quarter of the offline threshold, at most a minute —
// far below the threshold, far above the polling rate of a fleet under load.
func (c *Core) seenResolution() time.Duration {
	return min(max(c.Config.OfflineAfter/4, time.Second), time.Minute)
}

// seenDue is how long after its last write a device's last_seen_at is
// rewritten: between three quarters of the resolution and all of it, drawn
// anew from the device and the time of each write. A fleet that came online
// at once (a fresh install, the end of an outage) would otherwise have all
// its rows fall due in the same flush every resolution, for ever.
func seenDue(resolution time.Duration, k [2]string, last time.Time) time.Duration {
	quarter := uint64(resolution / 4)
	if quarter == 0 {
		return resolution
	}
	h := fnv.New64a()
	h.Write([]byte(k[0]))
	h.Write([]byte{0})
	h.Write([]byte(k[1]))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(last.UnixNano()))
	h.Write(b[:])
	return resolution - time.Duration(h.Sum64()%quarter)
}

// MarkSeen records that a device talked to the server now.
func (c *Core) MarkSeen(tenant, deviceID string) {
	now := c.Now()
	c.seen.mu.Lock()
	if c.seen.pending == nil {
		c.seen.pending = map[[2]string]time.Time{}
	}
	c.seen.pending[[2]string{tenant, deviceID}] = now
	c.seen.mu.Unlock()
}

// FlushSeen writes the collected marks.
func (c *Core) FlushSeen(ctx context.Context) error {
	c.seen.mu.Lock()
	batch := c.seen.pending
	c.seen.pending = nil
	c.seen.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	now := c.Now()
	offlineBefore := now.Add(-c.Config.OfflineAfter)
	list := make([]store.DeviceSeen, 0, len(batch))
	c.seen.mu.Lock()
	if c.seen.recent == nil || len(c.seen.recent) > 2_000_000 {
		c.seen.recent = map[[2]string]time.Time{}
	}
	res := c.seenResolution()
	for k, at := range batch {
		last, ok := c.seen.recent[k]
		if ok && at.Sub(last) < seenDue(res, k, last) && !last.Before(offlineBefore) {
			continue // written moments ago; a fast-polling fleet would otherwise rewrite every row every flush
		}
		list = append(list, store.DeviceSeen{Tenant: k[0], ID: k[1], At: at, Check: !ok || last.Before(offlineBefore)})
		c.seen.recent[k] = at
	}
	c.seen.mu.Unlock()
	online, err := c.Store.TouchDevices(ctx, list, offlineBefore)
	if err != nil {
		return err
	}
	for _, d := range online {
		c.publishPresence(d.Tenant, d.ID, events.TypeDeviceOnline, "online", d.At)
	}
	return nil
}

// publishPresence announces a device coming online or going offline, in
// Flotilla's shape and the SPORE gateway's node_status_update.
func (c *Core) publishPresence(tenant, id, typ, status string, at time.Time) {
	c.Events.Publish(events.Event{Type: typ, Tenant: tenant, DeviceID: id, Time: at, Key: "presence/" + id,
		Data: events.Message(map[string]any{"type": typ, "deviceId": id})})
	c.Events.Publish(events.Event{Type: events.TypeNodeStatusUpdate, Tenant: tenant, DeviceID: id, Time: at, Key: "node/" + id,
		Data: events.Message(map[string]any{"type": events.TypeNodeStatusUpdate, "nodeIp": id, "deviceId": id, "status": status,
			"timestamp": at.UTC().Format(time.RFC3339)})})
}

// SweepOffline announces devices that crossed the offline threshold since
// the last sweep.
func (c *Core) SweepOffline(ctx context.Context) error {
	to := c.Now().Add(-c.Config.OfflineAfter)
	c.seen.mu.Lock()
	from := c.seen.swept
	c.seen.swept = to
	c.seen.mu.Unlock()
	if from.IsZero() || !to.After(from) {
		return nil
	}
	gone, err := c.Store.DevicesLastSeenBetween(ctx, from, to)
	if err != nil {
		return err
	}
	for _, d := range gone {
		c.publishPresence(d.Tenant, d.ID, events.TypeDeviceOffline, "offline", c.Now())
	}
	return nil
}

// RunSeenFlusher flushes seen marks every interval until ctx ends, then
// once more.
func (c *Core) RunSeenFlusher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := c.FlushSeen(context.WithoutCancel(ctx)); err != nil {
				c.Log.Warn("flush last-seen", "err", err)
			}
			return
		case <-t.C:
			if err := c.FlushSeen(ctx); err != nil {
				c.Log.Warn("flush last-seen", "err", err)
			}
			if err := c.SweepOffline(ctx); err != nil {
				c.Log.Warn("offline sweep", "err", err)
			}
		}
	}
}
