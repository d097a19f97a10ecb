// Package cluster links server replicas that share one database. Changes a
// replica makes that other replicas cache — a device's poll answer, a
// device's credentials — and wakeups for the rollout scheduler are batched
// and sent over a Bus (PostgreSQL LISTEN/NOTIFY); messages from other
// replicas are applied to this replica's caches only, so nothing echoes.
package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Bus carries payloads between replicas.
type Bus interface {
	Publish(ctx context.Context, channel, payload string) error
	Subscribe(ctx context.Context, channel string, ready chan<- struct{}, fn func(payload string))
}

// Channel is the notification channel replicas share.
const Channel = "flotilla_cluster"

// Handlers apply another replica's messages locally.
type Handlers struct {
	// Invalidate drops a device's cached poll answer (device "" means the
	// whole tenant).
	Invalidate func(tenant, device string)
	// ForgetAuth drops cached device credentials.
	ForgetAuth func()
	// Wake asks the local scheduler to look at a rollout.
	Wake func(rolloutID string)
	// Event delivers another replica's event payload.
	Event func(payload []byte)
}

// message is what goes over the bus.
type message struct {
	Origin  string            `json:"o"`
	Tenant  string            `json:"t,omitempty"`
	Devices []string          `json:"d,omitempty"`
	All     bool              `json:"a,omitempty"` // every device of Tenant
	Auth    bool              `json:"f,omitempty"`
	Wake    []string          `json:"w,omitempty"`
	Events  []json.RawMessage `json:"e,omitempty"`
}

// maxDevices per message; bigger batches invalidate the whole tenant.
const maxDevices = 200

// Link is one replica's side of the cluster.
type Link struct {
	bus    Bus
	origin string
	log    *slog.Logger
	h      Handlers

	mu      sync.Mutex
	devices map[string]map[string]bool // tenant -> devices
	all     map[string]bool
	auth    bool
	wake    map[string]bool
	events  []json.RawMessage
	kick    chan struct{}

	// sendMu serializes flushes, so that when Flush returns everything
	// queued before it was published, even by a concurrent flush.
	sendMu sync.Mutex
}

// New returns a link for the replica named origin.
func New(bus Bus, origin string, log *slog.Logger, h Handlers) *Link {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Link{bus: bus, origin: origin, log: log, h: h, devices: map[string]map[string]bool{}, all: map[string]bool{},
		wake: map[string]bool{}, kick: make(chan struct{}, 1)}
}

func (l *Link) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Invalidate queues a poll-answer invalidation for the other replicas.
func (l *Link) Invalidate(tenant, device string) {
	l.mu.Lock()
	if device == "" {
		l.all[tenant] = true
	} else {
		if l.devices[tenant] == nil {
			l.devices[tenant] = map[string]bool{}
		}
		l.devices[tenant][device] = true
	}
	l.mu.Unlock()
	l.poke()
}

// ForgetAuth queues a credential-cache flush for the other replicas.
func (l *Link) ForgetAuth() {
	l.mu.Lock()
	l.auth = true
	l.mu.Unlock()
	l.poke()
}

// Wake queues a scheduler wakeup for the other replicas.
func (l *Link) Wake(rolloutID string) {
	l.mu.Lock()
	l.wake[rolloutID] = true
	l.mu.Unlock()
	l.poke()
}

// maxEventBytes bounds one event forwarded; bigger ones are not forwarded
// (watchers on other replicas see the state in their next snapshot).
const maxEventBytes = 7000

// QueueEvent queues an event payload for the other replicas; queued events
// go out packed into as few notifications as fit.
func (l *Link) QueueEvent(payload []byte) {
	if len(payload) > maxEventBytes {
		return
	}
	l.mu.Lock()
	if len(l.events) < 200000 {
		l.events = append(l.events, payload)
	}
	l.mu.Unlock()
	l.poke()
}

// Notice wraps one event payload as a message for the other replicas, for a
// store to send inside a transaction (see sqlstore.Store.NotifyFinal); ""
// when the payload is too big to travel.
func (l *Link) Notice(event []byte) (channel, payload string) {
	if len(event) > maxEventBytes {
		return "", ""
	}
	b, _ := json.Marshal(message{Origin: l.origin, Events: []json.RawMessage{event}})
	return Channel, string(b)
}

// Run flushes queued messages and applies incoming ones until ctx ends.
// ready, if not nil, is closed once the replica listens.
func (l *Link) Run(ctx context.Context, ready chan<- struct{}) {
	go l.bus.Subscribe(ctx, Channel, ready, l.receive)
	for {
		select {
		case <-ctx.Done():
			l.flush(context.WithoutCancel(ctx))
			return
		case <-l.kick:
			// Let a burst (a wave release) gather into few messages.
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
			}
			// Deliver even while shutting down: a lost invalidation would
			// leave another replica's cache stale.
			l.flush(context.WithoutCancel(ctx))
		}
	}
}

// Flush publishes everything queued so far before it returns. Callers use
// it when a change must reach the other replicas before its author is told
// it is done: if this replica dies right after, nothing is lost.
func (l *Link) Flush(ctx context.Context) { l.flush(ctx) }

func (l *Link) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	l.mu.Lock()
	devices, all, auth, wake, evs := l.devices, l.all, l.auth, l.wake, l.events
	l.devices, l.all, l.auth, l.wake, l.events = map[string]map[string]bool{}, map[string]bool{}, false, map[string]bool{}, nil
	l.mu.Unlock()
	var msgs []message
	for t := range all {
		msgs = append(msgs, message{Origin: l.origin, Tenant: t, All: true})
	}
	for t, devs := range devices {
		if all[t] {
			continue
		}
		if len(devs) > maxDevices*20 {
			msgs = append(msgs, message{Origin: l.origin, Tenant: t, All: true})
			continue
		}
		m := message{Origin: l.origin, Tenant: t}
		for d := range devs {
			m.Devices = append(m.Devices, d)
			if len(m.Devices) == maxDevices {
				msgs = append(msgs, m)
				m = message{Origin: l.origin, Tenant: t}
			}
		}
		if len(m.Devices) > 0 {
			msgs = append(msgs, m)
		}
	}
	if auth || len(wake) > 0 {
		m := message{Origin: l.origin, Auth: auth}
		for id := range wake {
			m.Wake = append(m.Wake, id)
		}
		msgs = append(msgs, m)
	}
	// Events go last, so that a watcher never learns of a change before the
	// caches that serve it were invalidated.
	var batch message
	size := 0
	for _, e := range evs {
		if size+len(e) > maxEventBytes && len(batch.Events) > 0 {
			msgs = append(msgs, batch)
			batch, size = message{}, 0
		}
		batch.Origin = l.origin
		batch.Events = append(batch.Events, e)
		size += len(e) + 1
	}
	if len(batch.Events) > 0 {
		msgs = append(msgs, batch)
	}
	for _, m := range msgs {
		b, _ := json.Marshal(m)
		if err := l.bus.Publish(ctx, Channel, string(b)); err != nil && ctx.Err() == nil {
			l.log.Warn("cluster publish", "err", err)
		}
	}
}

func (l *Link) receive(payload string) {
	var m message
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.Origin == l.origin {
		return
	}
	if l.h.Invalidate != nil {
		if m.All {
			l.h.Invalidate(m.Tenant, "")
		}
		for _, d := range m.Devices {
			l.h.Invalidate(m.Tenant, d)
		}
	}
	if m.Auth && l.h.ForgetAuth != nil {
		l.h.ForgetAuth()
	}
	if l.h.Wake != nil {
		for _, id := range m.Wake {
			l.h.Wake(id)
		}
	}
	if l.h.Event != nil {
		for _, e := range m.Events {
			l.h.Event(e)
		}
	}
}
