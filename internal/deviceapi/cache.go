package deviceapi

import (
	"bytes"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// pollCache holds the rendered poll answers of the devices that polled
// lately. A per-key version guards against storing an answer computed
// before an invalidation that raced with it. It holds at most
// maxPollAnswers answers: a fleet of millions that all poll keeps the
// memory of a quarter million (about 130 MiB), an arbitrary one making
// room for the newest, and a device whose answer went is answered from the
// database once.
type pollCache struct {
	shards [64]cacheShard
	seed   maphash.Seed
}

type cacheShard struct {
	mu       sync.RWMutex
	entries  map[string]*pollEntry
	versions map[string]uint64
}

type pollEntry struct {
	body  []byte
	etag  string
	base  string
	until time.Time // zero: valid until invalidated
	// ends is the deployment whose end leaves the device with nothing to
	// do, when the answer can be rewritten for it (afterEnd); 0 if none.
	ends int64
	// read is when the version the answer was stored under was read, on
	// the cache's clock (sinceStart): the answer reflects no change
	// announced before then.
	read time.Duration
}

// maxPollAnswers bounds the cache, in shards of equal share.
const maxPollAnswers = 1 << 18

func newPollCache() *pollCache {
	c := &pollCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].entries = map[string]*pollEntry{}
		c.shards[i].versions = map[string]uint64{}
	}
	return c
}

func cacheKey(tenant, device string) string { return tenant + "\x00" + device }

func (c *pollCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// cacheStart is the origin of the cache's clock.
var cacheStart = time.Now()

// sinceStart reads the cache's clock: monotonic, and 8 bytes an entry.
func sinceStart(t time.Time) time.Duration { return t.Sub(cacheStart) }

// version is a key's version as get read it, and when (no earlier): an
// answer stored under it reflects every change announced before then.
type version struct {
	n    uint64
	read time.Duration
}

// get returns a usable entry, or the key's version for a later put. The
// clock is read only then: a poll answered from the cache needs no version.
func (c *pollCache) get(key, base string, now time.Time) (*pollEntry, version) {
	sh := c.shard(key)
	sh.mu.RLock()
	e, n := sh.entries[key], sh.versions[key]
	sh.mu.RUnlock()
	if e == nil || e.base != base || (!e.until.IsZero() && !now.Before(e.until)) {
		return nil, version{n: n, read: sinceStart(time.Now())}
	}
	return e, version{n: n}
}

// put stores e unless the key was invalidated since version v was read.
func (c *pollCache) put(key string, v version, e *pollEntry) {
	e.read = v.read
	sh := c.shard(key)
	sh.mu.Lock()
	if sh.versions[key] == v.n {
		if _, ok := sh.entries[key]; !ok && len(sh.entries) >= maxPollAnswers/len(c.shards) {
			for k := range sh.entries { // map order: an arbitrary one
				delete(sh.entries, k)
				break
			}
		}
		sh.entries[key] = e
	}
	sh.mu.Unlock()
}

// rewrite follows a change the device's cached answer can be rewritten
// for: next returns the answer after it (nil: drop it), and an answer
// computed before the change can no longer be stored.
func (c *pollCache) rewrite(key string, next func(*pollEntry) *pollEntry) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.versions[key]++
	if e := sh.entries[key]; e != nil {
		if ne := next(e); ne != nil {
			sh.entries[key] = ne
		} else {
			delete(sh.entries, key)
		}
	}
}

// asksForAttributes reports whether a rendered answer has a configData
// link: JSON escapes a quote inside a string, so the key cannot be part of
// an href.
func asksForAttributes(body []byte) bool { return bytes.Contains(body, []byte(`"configData":`)) }

// invalidate drops a device's answer, or every answer of a tenant when
// device is "".
func (c *pollCache) invalidate(tenant, device string) {
	if device != "" {
		key := cacheKey(tenant, device)
		sh := c.shard(key)
		sh.mu.Lock()
		delete(sh.entries, key)
		sh.versions[key]++
		sh.mu.Unlock()
		return
	}
	prefix := tenant + "\x00"
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k := range sh.entries {
			if strings.HasPrefix(k, prefix) {
				delete(sh.entries, k)
				sh.versions[k]++
			}
		}
		sh.mu.Unlock()
	}
}
