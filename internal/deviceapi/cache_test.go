package deviceapi

import (
	"fmt"
	"testing"
	"time"
)

// TestPollCacheIsBounded: answers beyond the bound make room for the
// newest instead of growing the cache; what is cached is still served.
func TestPollCacheIsBounded(t *testing.T) {
	c := newPollCache()
	now := time.Now()
	n := maxPollAnswers + 5000
	for i := 0; i < n; i++ {
		key := cacheKey("default", fmt.Sprintf("d%07d", i))
		_, v := c.get(key, "b", now)
		c.put(key, v, &pollEntry{body: []byte("x"), base: "b"})
	}
	total := 0
	for i := range c.shards {
		total += len(c.shards[i].entries)
	}
	if total > maxPollAnswers {
		t.Fatalf("%d answers cached, bound %d", total, maxPollAnswers)
	}
	if total < maxPollAnswers*9/10 {
		t.Fatalf("only %d answers cached of %d", total, maxPollAnswers)
	}
	last := cacheKey("default", fmt.Sprintf("d%07d", n-1))
	if e, _ := c.get(last, "b", now); e == nil {
		t.Fatal("the newest answer is not served from the cache")
	}
}
