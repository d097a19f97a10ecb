package events

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Filter selects the events a subscriber receives.
type Filter struct {
	Tenant    string
	RolloutID string
	DeviceID  string
	Types     []string // empty: all
}

func (f Filter) match(e Event) bool {
	if f.Tenant != "" && e.Tenant != f.Tenant {
		return false
	}
	if f.RolloutID != "" && e.RolloutID != f.RolloutID {
		return false
	}
	if f.DeviceID != "" && e.DeviceID != f.DeviceID {
		return false
	}
	return len(f.Types) == 0 || slices.Contains(f.Types, e.Type)
}

// HubConfig tunes a Hub.
type HubConfig struct {
	// Ring is how many recent events are kept for clients that resume
	// (default 20000).
	Ring int
	// CoalesceAfter is the backlog at which a subscriber's queue starts
	// keeping only the latest event per key (default 1024).
	CoalesceAfter int
	// DropAfter is the backlog at which a subscriber is dropped (default
	// 100000).
	DropAfter int
	// BatchInterval holds batched (progress) events and publishes only the
	// latest per key at this interval (default 250ms).
	BatchInterval time.Duration
}

// Hub is the in-process event bus. Publish never blocks.
type Hub struct {
	cfg HubConfig

	mu   sync.Mutex
	seq  uint64
	ring []Event // circular
	head int     // index of the oldest event
	n    int
	subs map[*Sub]struct{}
	// closed, once set, is why every subscription ends (shutdown).
	closed string

	batchMu sync.Mutex
	batch   map[string]Event
	batchOn bool

	// injected is the time of the latest injected event per key.
	injMu    sync.Mutex
	injected map[string]time.Time

	// Forward, if set, receives every event published here (not those
	// injected from other replicas), e.g. to send it to them.
	Forward func(Event)
}

// NewHub returns a hub.
func NewHub(cfg HubConfig) *Hub {
	if cfg.Ring <= 0 {
		cfg.Ring = 20000
	}
	if cfg.CoalesceAfter <= 0 {
		cfg.CoalesceAfter = 1024
	}
	if cfg.DropAfter <= 0 {
		cfg.DropAfter = 100000
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = 250 * time.Millisecond
	}
	return &Hub{cfg: cfg, ring: make([]Event, cfg.Ring), subs: map[*Sub]struct{}{}, batch: map[string]Event{}}
}

// Publish delivers e to matching subscribers. An unbatched event replaces
// a batched one of the same key still waiting, so a late progress update
// never follows the state change that ended it.
//
// A keyed event older than the last one another replica sent with its key
// is dropped: a step written here just before another replica wrote the
// final state must not follow that state to the watchers.
func (h *Hub) Publish(e Event) {
	h.batchMu.Lock()
	defer h.batchMu.Unlock()
	if h.olderThanInjected(e) {
		return
	}
	if e.Batch && e.Key != "" {
		h.batch[e.Key] = e
		if !h.batchOn {
			h.batchOn = true
			time.AfterFunc(h.cfg.BatchInterval, h.flushBatch)
		}
		return
	}
	if e.Key != "" {
		delete(h.batch, e.Key)
	}
	h.publish(e, true)
}

// Inject delivers an event that another replica published. Events reach
// a replica by more than one path (a final state with its commit, and in
// the forwarded stream) and not always in order, so a keyed event — a
// state, not a step — older than or as old as the last one injected with
// its key is dropped: watchers never see a device go back in time or the
// same state twice.
func (h *Hub) Inject(e Event) {
	if e.Key != "" && !e.Time.IsZero() {
		h.injMu.Lock()
		if last, ok := h.injected[e.Key]; ok && !e.Time.After(last) {
			h.injMu.Unlock()
			return
		}
		if h.injected == nil || len(h.injected) >= maxInjectedKeys {
			h.injected = map[string]time.Time{}
		}
		h.injected[e.Key] = e.Time
		h.injMu.Unlock()
	}
	h.publish(e, false)
}

// maxInjectedKeys bounds the memory of injected keys; past it the memory
// starts over (an out-of-order event may then get through once).
const maxInjectedKeys = 1 << 20

func (h *Hub) flushBatch() {
	h.batchMu.Lock()
	defer h.batchMu.Unlock()
	batch := h.batch
	h.batch, h.batchOn = map[string]Event{}, false
	for _, e := range batch {
		if !h.olderThanInjected(e) {
			h.publish(e, true)
		}
	}
}

// olderThanInjected reports whether e is older than the last event with
// its key that another replica sent.
func (h *Hub) olderThanInjected(e Event) bool {
	if e.Key == "" || e.Time.IsZero() {
		return false
	}
	h.injMu.Lock()
	defer h.injMu.Unlock()
	last, ok := h.injected[e.Key]
	return ok && e.Time.Before(last)
}

func (h *Hub) publish(e Event, local bool) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	raw := e
	h.mu.Lock()
	h.seq++
	e.Seq = h.seq
	e.Data = withSeq(e.Data, e.Seq, e.Time)
	// The ring keeps the latest events for resuming clients.
	idx := (h.head + h.n) % len(h.ring)
	h.ring[idx] = e
	if h.n < len(h.ring) {
		h.n++
	} else {
		h.head = (h.head + 1) % len(h.ring)
	}
	for s := range h.subs {
		if s.filter.match(e) {
			s.push(e, h.cfg)
		}
	}
	fwd := h.Forward
	h.mu.Unlock()
	if local && fwd != nil {
		fwd(raw)
	}
}

// withSeq adds "seq" (and "timestamp" if missing) to a JSON object.
func withSeq(data []byte, seq uint64, t time.Time) []byte {
	if len(data) < 2 || data[0] != '{' {
		return data
	}
	prefix := `{"seq":` + strconv.FormatUint(seq, 10)
	if !containsKey(data, `"timestamp"`) {
		prefix += `,"timestamp":"` + t.UTC().Format(time.RFC3339Nano) + `"`
	}
	if len(data) == 2 {
		return []byte(prefix + "}")
	}
	return append([]byte(prefix+","), data[1:]...)
}

func containsKey(b []byte, key string) bool {
	for i := 0; i+len(key) <= len(b); i++ {
		if string(b[i:i+len(key)]) == key {
			return true
		}
	}
	return false
}

// Seq is the sequence number of the newest event.
func (h *Hub) Seq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// Subscribe starts delivering matching events. With after > 0, events
// newer than after are replayed first; resumed is false when the ring no
// longer holds them all, and the caller should send a snapshot instead.
func (h *Hub) Subscribe(f Filter, after uint64) (s *Sub, resumed bool) {
	s = &Sub{filter: f, wake: make(chan struct{}, 1), keys: map[string]int{}, done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	resumed = after == 0
	if after > 0 && after <= h.seq {
		oldest := h.seq - uint64(h.n) + 1
		if h.n > 0 && after+1 >= oldest {
			resumed = true
			for i := 0; i < h.n; i++ {
				e := h.ring[(h.head+i)%len(h.ring)]
				if e.Seq > after && f.match(e) {
					s.push(e, h.cfg)
				}
			}
		}
	} else if after > h.seq {
		resumed = false // a sequence from another life of the server
	}
	if h.closed != "" {
		s.dropped = h.closed
	}
	h.subs[s] = struct{}{}
	s.hub = h
	return s, resumed
}

// ReasonShutdown is why subscriptions end when the server stops.
const ReasonShutdown = "server shutting down"

// CloseAll ends every subscription, present and future: a server shutting
// down tells its watchers at once rather than keeping their streams, and
// itself, alive until a timeout.
func (h *Hub) CloseAll() {
	const reason = ReasonShutdown
	h.mu.Lock()
	h.closed = reason
	subs := make([]*Sub, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		if s.dropped == "" {
			s.dropped = reason
		}
		s.mu.Unlock()
		s.signal()
	}
}

// Subscribers counts live subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Sub is one subscription.
type Sub struct {
	hub    *Hub
	filter Filter

	mu         sync.Mutex
	queue      []Event
	keys       map[string]int // key -> index in queue, while coalescing
	coalescing bool
	dropped    string
	wake       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
}

// push queues e; the hub lock is held, so this must not block.
func (s *Sub) push(e Event, cfg HubConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped != "" {
		return
	}
	if !s.coalescing && len(s.queue) >= cfg.CoalesceAfter {
		s.coalescing = true
		for i, q := range s.queue {
			if q.Key != "" {
				s.keys[q.Key] = i
			}
		}
	}
	if s.coalescing && e.Key != "" {
		if i, ok := s.keys[e.Key]; ok {
			s.queue[i] = e // keep the latest state per key
			s.signal()
			return
		}
	}
	if len(s.queue) >= cfg.DropAfter {
		s.dropped = "too slow: more than " + strconv.Itoa(cfg.DropAfter) + " events behind"
		s.queue = nil
		s.signal()
		return
	}
	if s.coalescing && e.Key != "" {
		s.keys[e.Key] = len(s.queue)
	}
	s.queue = append(s.queue, e)
	s.signal()
}

func (s *Sub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Next waits for events and returns all that are queued. It returns an
// error when ctx ends or the subscriber was dropped (the error says why).
func (s *Sub) Next(ctx context.Context) ([]Event, error) {
	for {
		s.mu.Lock()
		if s.dropped != "" {
			reason := s.dropped
			s.mu.Unlock()
			return nil, &DroppedError{Reason: reason}
		}
		if len(s.queue) > 0 {
			q := s.queue
			s.queue = nil
			s.keys = map[string]int{}
			s.coalescing = false
			s.mu.Unlock()
			return q, nil
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.wake:
		case <-s.done:
			return nil, &DroppedError{Reason: ReasonShutdown}
		}
	}
}

// Backlog is how many events wait to be read.
func (s *Sub) Backlog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.hub != nil {
			s.hub.mu.Lock()
			delete(s.hub.subs, s)
			s.hub.mu.Unlock()
		}
	})
}

// DroppedError ends a subscription that could not keep up.
type DroppedError struct{ Reason string }

func (e *DroppedError) Error() string { return "event stream closed: " + e.Reason }
