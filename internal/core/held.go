package core

import (
	"context"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// heldFeedback keeps a device's intermediate feedback (download progress,
// downloaded, proceeding) in memory for a moment, to be written with what
// the device reports next — usually its final state — as one change: a
// fleet reporting four steps per update then costs the single SQLite
// writer one write per update instead of four.
//
// What may be held is narrow, so that holding is indistinguishable from
// the feedback arriving a moment later: a step is held only for a
// deployment this process wrote last (within holdOpen, and nothing it
// announced for the device since: announce closes the window) and whose
// device fetched it (a server-side cancel then asks the device either
// way), when the step does not end the deployment and leaves no cancel
// pending, and the status-entry quota has room. The first held step is
// written at most Config.HoldFeedback later, with those after it: the
// window counts from it, not from the write, so that a device answered
// slowly by a loaded server still has its steps held. Final feedback is
// always written before the device is answered, with the held steps
// before it. A crash loses at most the held steps of the last
// HoldFeedback — history entries, never an outcome or a gate decision.
type heldFeedback struct {
	mu sync.Mutex
	m  map[[2]string]*heldEntry // by tenant and device
	// bytes is about what the held steps' details take, bounded by
	// maxHeldBytes: devices choose their details' size.
	bytes int
}

type heldEntry struct {
	id int64
	// d is the deployment as last written, then as the held steps leave it.
	d     flotilla.Deployment
	steps []flotilla.Step
	// synced is when d was written, and first when the first step was
	// held, on the process's clock: the windows are about the process, not
	// the domain's time (which tests freeze).
	synced, first time.Time
	// closed: the device's deployments changed otherwise since d was
	// written, so d may be stale; no further step is held.
	closed bool
}

// holdOpen is how long after this process wrote a deployment a first step
// may be held: long enough for a device on a loaded server to report,
// short enough to bound what a change this process did not see (another
// replica's) can leave stale.
const holdOpen = time.Minute

const (
	maxHeldSteps   = 16
	maxHeldDevices = 100_000
	maxHeldBytes   = 32 << 20
)

// stepSize is about what a held step of f takes in memory.
func stepSize(f flotilla.Feedback) int {
	n := 128
	for _, d := range f.Details {
		n += len(d) + 16
	}
	return n
}

// hold keeps f for the deployment ref if it may be held, and returns the
// deployment as f leaves it.
func (c *Core) hold(ref Ref, f flotilla.Feedback, now time.Time) (flotilla.Deployment, bool) {
	c.held.mu.Lock()
	defer c.held.mu.Unlock()
	e := c.held.m[[2]string{ref.Tenant, ref.DeviceID}]
	if e == nil || e.id != ref.ID || e.closed || time.Since(e.synced) >= holdOpen ||
		(len(e.steps) > 0 && time.Since(e.first) >= c.Config.HoldFeedback) || len(e.steps) >= maxHeldSteps ||
		e.d.DeviceEvents >= c.Config.Quotas.StatusEntries || c.held.bytes+stepSize(f) > maxHeldBytes {
		return flotilla.Deployment{}, false
	}
	ch, err := flotilla.ApplyFeedback(e.d, f, false, now)
	if err != nil || !holdable(ch.Deployment) {
		return flotilla.Deployment{}, false
	}
	if len(e.steps) == 0 {
		e.first = time.Now()
	}
	e.steps = append(e.steps, flotilla.Step{Feedback: f, At: now})
	c.held.bytes += stepSize(f)
	e.d = ch.Deployment
	e.d.DeviceEvents++
	return e.d, true
}

// holdable reports whether feedback that leaves a deployment at d could
// be held: it is a pull deployment its device fetched (its retrieval is
// written at once: a server-side cancel must know the device has it) and
// works on, with no cancel pending.
func holdable(d flotilla.Deployment) bool {
	return d.Delivery != flotilla.DeliveryPush && d.RetrievedAt != nil && working(d.State)
}

// synced notes a deployment as a device's report just wrote it: the next
// steps may be held against it.
func (c *Core) synced(d flotilla.Deployment) {
	if c.Config.HoldFeedback <= 0 {
		return
	}
	key := [2]string{d.Tenant, d.DeviceID}
	c.held.mu.Lock()
	defer c.held.mu.Unlock()
	if !holdable(d) {
		if e := c.held.m[key]; e != nil && e.id == d.ID && len(e.steps) == 0 {
			delete(c.held.m, key)
		}
		return
	}
	if c.held.m == nil {
		c.held.m = map[[2]string]*heldEntry{}
	}
	if e := c.held.m[key]; (e != nil && len(e.steps) > 0) || (e == nil && len(c.held.m) >= maxHeldDevices) {
		return // another deployment's steps are waiting for the flusher, or no room
	}
	c.held.m[key] = &heldEntry{id: d.ID, d: d, synced: time.Now()}
}

// takeHeld removes and returns the steps held for ref. Every deployment
// change asks; with holding off it costs nothing.
func (c *Core) takeHeld(ref Ref) []flotilla.Step {
	if c.Config.HoldFeedback <= 0 {
		return nil
	}
	key := [2]string{ref.Tenant, ref.DeviceID}
	c.held.mu.Lock()
	defer c.held.mu.Unlock()
	e := c.held.m[key]
	if e == nil || e.id != ref.ID {
		return nil
	}
	delete(c.held.m, key)
	for _, st := range e.steps {
		c.held.bytes -= stepSize(st.Feedback)
	}
	return e.steps
}

// writeHeldOf writes what is held for a device's deployments, so that a
// read of them sees every step its device was answered for.
func (c *Core) writeHeldOf(ctx context.Context, tenant, deviceID string) {
	c.held.mu.Lock()
	var ref Ref
	// An entry without steps is a device's hold window, which a read
	// leaves open.
	if e := c.held.m[[2]string{tenant, deviceID}]; e != nil && len(e.steps) > 0 {
		ref = Ref{Tenant: tenant, DeviceID: deviceID, ID: e.id}
	}
	c.held.mu.Unlock()
	if ref.ID != 0 {
		c.writeHeld(ctx, ref, c.takeHeld(ref))
	}
}

// writeHeld writes held steps as one change. A deployment that ended
// meanwhile (canceled by the server, finished through another replica)
// takes no more feedback: its held steps are dropped, as they would have
// been refused had they arrived late.
func (c *Core) writeHeld(ctx context.Context, ref Ref, steps []flotilla.Step) (flotilla.Deployment, bool) {
	if len(steps) == 0 {
		return flotilla.Deployment{}, false
	}
	d, err := c.change(ctx, ref, "", func(d flotilla.Deployment, _ time.Time) (flotilla.Change, error) {
		return flotilla.ApplySteps(d, steps)
	})
	if err != nil && !flotilla.IsCode(err, flotilla.EGone) && !flotilla.IsCode(err, flotilla.ENotFound) {
		c.Log.Warn("write held feedback", "tenant", ref.Tenant, "device", ref.DeviceID, "deployment", ref.ID, "err", err)
	}
	return d, err == nil
}

// FlushHeld writes the steps held for longer than Config.HoldFeedback, or
// all of them when all is set, and forgets deployments nothing was held
// for whose window closed.
func (c *Core) FlushHeld(ctx context.Context, all bool) {
	var due []Ref
	c.held.mu.Lock()
	for key, e := range c.held.m {
		if len(e.steps) == 0 {
			if all || e.closed || time.Since(e.synced) >= holdOpen {
				delete(c.held.m, key)
			}
			continue
		}
		if all || time.Since(e.first) >= c.Config.HoldFeedback {
			due = append(due, Ref{Tenant: key[0], DeviceID: key[1], ID: e.id})
		}
	}
	c.held.mu.Unlock()
	// Concurrently, so that the store's group commit writes them together.
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, ref := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Written, the deployment opens a new window, as after a
			// report written at once: a device slower than the hold still
			// has its next steps held.
			if d, ok := c.writeHeld(ctx, ref, c.takeHeld(ref)); ok && !all {
				c.synced(d)
			}
		}()
	}
	wg.Wait()
}

// RunHeldFlusher writes held feedback once it is due until ctx ends, then
// writes whatever is left.
func (c *Core) RunHeldFlusher(ctx context.Context) {
	if c.Config.HoldFeedback <= 0 {
		return
	}
	t := time.NewTicker(max(c.Config.HoldFeedback/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.FlushHeld(context.WithoutCancel(ctx), true)
			return
		case <-t.C:
			c.FlushHeld(ctx, false)
		}
	}
}

// closeHold ends the hold window of a device's deployment: something other
// than its device's reports changed what the device has, so the copy a
// step would be checked against may be stale. Steps already held are
// written as they would have been.
func (c *Core) closeHold(tenant, deviceID string) {
	if c.Config.HoldFeedback <= 0 {
		return
	}
	c.held.mu.Lock()
	if e := c.held.m[[2]string{tenant, deviceID}]; e != nil {
		e.closed = true
	}
	c.held.mu.Unlock()
}
