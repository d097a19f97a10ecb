package deviceapi

import (
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
)

// TestAnswerAfterStartIsTheRenderedOne: rewriting a cached answer without
// an action for a wave's release gives, byte for byte and with the same
// lifetime, what rendering the device as the store then reads it gives;
// an answer that cannot be rewritten so is dropped.
func TestAnswerAfterStartIsTheRenderedOne(t *testing.T) {
	s := renderer(time.Hour)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	soon, past := now.Add(10*time.Minute), now.Add(-time.Minute)
	released := func(typ flotilla.DeploymentType, forceAt *time.Time) flotilla.Deployment {
		return flotilla.Deployment{ID: 7, State: flotilla.StatePending, Type: typ, ForceAt: forceAt}
	}
	installed := &flotilla.Deployment{ID: 3, State: flotilla.StateSucceeded}
	windowed := released(flotilla.TypeForced, nil)
	windowed.Window = &flotilla.MaintenanceWindow{Schedule: "0 0 12 * * ?", Duration: "01:00:00", Timezone: "UTC"}
	for _, tc := range []struct {
		name      string
		before    core.DeviceView
		d         flotilla.Deployment
		read      time.Duration // when the cached answer was read; the release began at 10
		rewritten bool
	}{
		{"forced", core.DeviceView{}, released(flotilla.TypeForced, nil), 1, true},
		{"soft, with an installed base and a request for attributes", core.DeviceView{Installed: installed, AttributesRequested: true}, released(flotilla.TypeSoft, nil), 1, true},
		{"download only", core.DeviceView{Installed: installed}, released(flotilla.TypeDownloadOnly, nil), 1, true},
		{"forced later: the answer lasts until then", core.DeviceView{}, released(flotilla.TypeTimeForced, &soon), 1, true},
		{"forced already", core.DeviceView{}, released(flotilla.TypeTimeForced, &past), 1, true},
		{"another action", core.DeviceView{Action: &flotilla.Deployment{ID: 5, State: flotilla.StatePending}, ActionAlone: true}, released(flotilla.TypeForced, nil), 1, false},
		{"a cancel", core.DeviceView{Action: &flotilla.Deployment{ID: 5, State: flotilla.StateCancelRequested}, ActionAlone: true}, released(flotilla.TypeForced, nil), 1, false},
		{"read as the release began", core.DeviceView{}, released(flotilla.TypeForced, nil), 10, false},
		{"read after the release began", core.DeviceView{}, released(flotilla.TypeForced, nil), 11, false},
		{"a maintenance window", core.DeviceView{}, windowed, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := s.renderPoll(tc.before, "b", now)
			e.read = tc.read
			got := afterStart(e, tc.d, 10, now)
			if !tc.rewritten {
				if got != nil {
					t.Fatalf("rewritten to %s, want dropped", got.body)
				}
				return
			}
			after := tc.before
			after.Action, after.ActionAlone = &tc.d, true
			want := s.renderPoll(after, "b", now)
			if got == nil || string(got.body) != string(want.body) || got.etag != want.etag || !got.until.Equal(want.until) || got.ends != want.ends || got.read != tc.read {
				t.Fatalf("rewritten = %+v, want %+v", got, want)
			}
		})
	}
}

// TestStartedInTheCache: a release rewrites the answer read before it in
// place, drops the answer read after it began, and refuses an answer
// computed before it; the rewritten answer's end is rewritten in turn.
func TestStartedInTheCache(t *testing.T) {
	s := renderer(0)
	c, now := newPollCache(), time.Now()
	early, late, racing := cacheKey("t", "early"), cacheKey("t", "late"), cacheKey("t", "racing")
	_, v := c.get(early, "b", now)
	c.put(early, v, s.renderPoll(core.DeviceView{}, "b", now))
	_, before := c.get(racing, "b", now)
	began := sinceStart(time.Now())
	for began <= v.read { // the clock must have moved on
		began = sinceStart(time.Now())
	}
	_, v = c.get(late, "b", now)
	c.put(late, v, s.renderPoll(core.DeviceView{}, "b", now))
	d := flotilla.Deployment{ID: 7, State: flotilla.StatePending, Type: flotilla.TypeForced}
	for _, k := range []string{early, late, racing} {
		c.rewrite(k, func(e *pollEntry) *pollEntry { return afterStart(e, d, began, now) })
	}
	want := s.renderPoll(core.DeviceView{Action: &d, ActionAlone: true}, "b", now)
	if e, _ := c.get(early, "b", now); e == nil || string(e.body) != string(want.body) {
		t.Fatalf("the answer after the release = %+v, want %s", e, want.body)
	}
	if e, _ := c.get(late, "b", now); e != nil {
		t.Fatalf("an answer read after the release began was kept: %s", e.body)
	}
	c.put(racing, before, s.renderPoll(core.DeviceView{}, "b", now))
	if e, _ := c.get(racing, "b", now); e != nil {
		t.Fatal("an answer computed before the release was stored after it")
	}
	c.rewrite(early, func(e *pollEntry) *pollEntry { return afterEnd(e, 7, false) })
	if e, _ := c.get(early, "b", now); e == nil || string(e.body) != string(s.renderPoll(core.DeviceView{}, "b", now).body) {
		t.Fatalf("the answer after the released deployment's end = %+v", e)
	}
}
