package deviceapi

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
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

// TestAnsweredAttributes: an attribute upload takes the configData link
// out of an answer that has one (keeping the rest, with a new ETag), keeps
// one that does not, and refuses an answer computed before it (it may
// still ask).
func TestAnsweredAttributes(t *testing.T) {
	c := newPollCache()
	now := time.Now()
	until := now.Add(time.Hour)
	entry := func(p ddi.Poll) *pollEntry {
		b, _ := json.Marshal(p)
		return &pollEntry{body: b, etag: etagOf(b), base: "b", until: until}
	}
	links := ddi.PollLinks{DeploymentBase: &ddi.Link{Href: "b/deploymentBase/7?c=1"}, InstalledBase: &ddi.Link{Href: "b/installedBase/3"}}
	want := entry(ddi.Poll{Config: ddi.PollConfig{Polling: ddi.Polling{Sleep: "00:00:30"}}, Links: links})
	links.ConfigData = &ddi.Link{Href: "b/configData"}
	asking, quiet, racing := cacheKey("t", "asking"), cacheKey("t", "quiet"), cacheKey("t", "racing")
	_, v := c.get(asking, "b", now)
	c.put(asking, v, entry(ddi.Poll{Config: ddi.PollConfig{Polling: ddi.Polling{Sleep: "00:00:30"}}, Links: links}))
	_, v = c.get(quiet, "b", now)
	kept := entry(ddi.Poll{})
	c.put(quiet, v, kept)
	_, before := c.get(racing, "b", now)

	for _, k := range []string{asking, quiet, racing} {
		c.rewrite(k, withoutConfigData)
	}
	if e, _ := c.get(asking, "b", now); e == nil || string(e.body) != string(want.body) || e.etag != want.etag || !e.until.Equal(until) {
		t.Fatalf("the asking answer after the upload = %+v, want %s", e, want.body)
	}
	if e, _ := c.get(quiet, "b", now); e != kept {
		t.Fatalf("an answer that did not ask was replaced: %+v", e)
	}
	c.put(racing, before, entry(ddi.Poll{Links: links}))
	if e, _ := c.get(racing, "b", now); e != nil {
		t.Fatal("an answer computed before the upload was stored after it")
	}
	// A device named like the key asks for nothing.
	if asksForAttributes([]byte(`{"_links":{"deploymentBase":{"href":"b/v1/configData/deploymentBase/1"}}}`)) {
		t.Fatal("an href naming configData counted as the link")
	}
}
