package core

import (
	"context"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/internal/store"
)

// seenBatch collects "device was seen" marks so that polls do not write to
// the database; FlushSeen writes them in one transaction.
type seenBatch struct {
	mu      sync.Mutex
	pending map[[2]string]time.Time
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
	list := make([]store.DeviceSeen, 0, len(batch))
	for k, at := range batch {
		list = append(list, store.DeviceSeen{Tenant: k[0], ID: k[1], At: at})
	}
	return c.Store.TouchDevices(ctx, list)
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
		}
	}
}
