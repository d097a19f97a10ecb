// Package ratelimit bounds how often one key — a device, a client address,
// a tenant — may act, so that no single caller can take the server's
// capacity from the others. It keeps one number per key (the generic cell
// rate algorithm: the time at which the key's bucket is empty again), in
// sharded maps, so a million devices cost a few tens of megabytes and a
// check costs a map lookup.
package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter allows Rate events per second per key, in bursts of up to Burst.
// The zero Limiter, and a nil one, allow everything.
type Limiter struct {
	interval int64 // nanoseconds between events at the sustained rate
	tau      int64 // how far ahead of now a key may run: the burst
	seed     maphash.Seed
	keys     atomic.Int64 // keys held, so Blocked on an empty limiter is free
	shards   [64]shard
}

type shard struct {
	mu sync.RWMutex
	// tat is each key's theoretical arrival time (unix nanoseconds): the
	// bucket is empty until then. Values are pointers so that a known key
	// is updated without building its string again.
	tat   map[string]*int64
	sweep int64 // when the shard was last swept of idle keys
}

// New returns a limiter of rate events per second with bursts of burst;
// rate <= 0 allows everything.
func New(rate float64, burst int) *Limiter {
	if rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	iv := int64(float64(time.Second) / rate)
	l := &Limiter{interval: iv, tau: iv * int64(burst-1), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].tat = map[string]*int64{}
	}
	return l
}

func (l *Limiter) shard(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
}

// Allow takes one event for key at now. When the key is over its rate it
// takes nothing and returns false and how long until an event would be
// allowed.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil || l.interval == 0 {
		return true, 0
	}
	return l.allow([]byte(key), now)
}

// AllowPair is Allow for the key a+"/"+b, without building it for a key
// already known (a tenant and a device id, say).
func (l *Limiter) AllowPair(a, b string, now time.Time) (bool, time.Duration) {
	if l == nil || l.interval == 0 {
		return true, 0
	}
	var buf [256]byte
	k := append(append(append(buf[:0], a...), '/'), b...)
	return l.allow(k, now)
}

func (l *Limiter) allow(key []byte, now time.Time) (bool, time.Duration) {
	t := now.UnixNano()
	sh := &l.shards[maphash.Bytes(l.seed, key)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p := sh.tat[string(key)] // no allocation for a lookup
	tat := t
	if p != nil && *p > t {
		tat = *p
	}
	if tat-t > l.tau {
		return false, time.Duration(tat - t - l.tau)
	}
	if p == nil {
		p = new(int64)
		sh.tat[string(key)] = p
		l.keys.Add(1)
	}
	*p = tat + l.interval
	l.sweepLocked(sh, t)
	return true, 0
}

// Blocked reports whether the next event for key would be refused, and for
// how long, without taking one: to turn callers away before doing work for
// them, and Allow only for what counts (a failed login, say).
func (l *Limiter) Blocked(key string, now time.Time) (bool, time.Duration) {
	if l == nil || l.interval == 0 {
		return false, 0
	}
	if l.keys.Load() == 0 {
		return false, 0 // nobody is being limited: the common case, free
	}
	t := now.UnixNano()
	sh := l.shard(key)
	sh.mu.RLock()
	var tat int64
	if p := sh.tat[key]; p != nil {
		tat = *p
	}
	sh.mu.RUnlock()
	if tat-t > l.tau {
		return true, time.Duration(tat - t - l.tau)
	}
	return false, 0
}

// sweepLocked drops keys whose bucket refilled, at most once a minute per
// shard, so that keys seen once do not stay forever.
func (l *Limiter) sweepLocked(sh *shard, t int64) {
	if t-sh.sweep < int64(time.Minute) || len(sh.tat) < 1024 {
		return
	}
	sh.sweep = t
	for k, tat := range sh.tat {
		if *tat < t {
			delete(sh.tat, k)
			l.keys.Add(-1)
		}
	}
}

// Len counts the keys held, for tests and metrics.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		l.shards[i].mu.RLock()
		n += len(l.shards[i].tat)
		l.shards[i].mu.RUnlock()
	}
	return n
}
