package deviceapi

import (
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
)

// TestAnswerAfterEndIsTheRenderedOne: rewriting a cached answer for the end
// of its action gives, byte for byte, what rendering the device as the
// store then reads it gives; an answer that cannot be rewritten so is
// dropped.
func TestAnswerAfterEndIsTheRenderedOne(t *testing.T) {
	s := renderer(time.Hour)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	dep := func(id int64, st flotilla.DeploymentState) *flotilla.Deployment {
		return &flotilla.Deployment{ID: id, State: st, Type: flotilla.TypeForced}
	}
	window := "0 0 12 * * ?"
	inWindow := dep(7, flotilla.StatePending)
	inWindow.Window = &flotilla.MaintenanceWindow{Schedule: window, Duration: "01:00:00", Timezone: "UTC"}
	for _, tc := range []struct {
		name      string
		before    core.DeviceView
		ended     int64
		succeeded bool
		after     *core.DeviceView // nil: dropped
	}{
		{"first install", core.DeviceView{Action: dep(7, flotilla.StateInstalling), ActionAlone: true}, 7, true,
			&core.DeviceView{Installed: dep(7, flotilla.StateSucceeded), AttributesRequested: true}},
		{"newer install", core.DeviceView{Action: dep(7, flotilla.StateInstalling), ActionAlone: true, Installed: dep(3, flotilla.StateSucceeded)}, 7, true,
			&core.DeviceView{Installed: dep(7, flotilla.StateSucceeded), AttributesRequested: true}},
		{"an install newer than the action stays", core.DeviceView{Action: dep(7, flotilla.StateInstalling), ActionAlone: true, Installed: dep(9, flotilla.StateSucceeded)}, 7, true,
			&core.DeviceView{Installed: dep(9, flotilla.StateSucceeded), AttributesRequested: true}},
		{"failure keeps the installed base and the request", core.DeviceView{Action: dep(7, flotilla.StateDownloading), ActionAlone: true, Installed: dep(3, flotilla.StateSucceeded), AttributesRequested: true}, 7, false,
			&core.DeviceView{Installed: dep(3, flotilla.StateSucceeded), AttributesRequested: true}},
		{"confirmed cancel", core.DeviceView{Action: dep(7, flotilla.StateCancelRequested), ActionAlone: true}, 7, false,
			&core.DeviceView{}},
		{"another deployment waits", core.DeviceView{Action: dep(7, flotilla.StateCancelRequested), Installed: dep(3, flotilla.StateSucceeded)}, 7, false, nil},
		{"another deployment ended", core.DeviceView{Action: dep(7, flotilla.StateInstalling), ActionAlone: true}, 8, true, nil},
		{"idle", core.DeviceView{Installed: dep(3, flotilla.StateSucceeded)}, 3, true, nil},
		{"a window moved the sleep", core.DeviceView{Action: inWindow, ActionAlone: true}, 7, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := afterEnd(s.renderPoll(tc.before, "b", now), tc.ended, tc.succeeded)
			if tc.after == nil {
				if got != nil {
					t.Fatalf("rewritten to %s, want dropped", got.body)
				}
				return
			}
			want := s.renderPoll(*tc.after, "b", now)
			if got == nil || string(got.body) != string(want.body) || got.etag != want.etag || got.ends != 0 {
				t.Fatalf("rewritten = %+v, want %s", got, want.body)
			}
		})
	}
}

// TestEndedInTheCache: the end rewrites the answer in place, drops one it
// cannot rewrite, and refuses an answer computed before it.
func TestEndedInTheCache(t *testing.T) {
	s := renderer(0)
	c, now := newPollCache(), time.Now()
	alone := core.DeviceView{Action: &flotilla.Deployment{ID: 7, State: flotilla.StateInstalling}, ActionAlone: true}
	waiting := core.DeviceView{Action: alone.Action}
	a, w, racing := cacheKey("t", "a"), cacheKey("t", "w"), cacheKey("t", "racing")
	_, v := c.get(a, "b", now)
	c.put(a, v, s.renderPoll(alone, "b", now))
	_, v = c.get(w, "b", now)
	c.put(w, v, s.renderPoll(waiting, "b", now))
	_, before := c.get(racing, "b", now)
	for _, k := range []string{a, w, racing} {
		c.rewrite(k, func(e *pollEntry) *pollEntry { return afterEnd(e, 7, true) })
	}
	want := s.renderPoll(core.DeviceView{Installed: &flotilla.Deployment{ID: 7}, AttributesRequested: true}, "b", now)
	if e, _ := c.get(a, "b", now); e == nil || string(e.body) != string(want.body) {
		t.Fatalf("the answer after the end = %+v, want %s", e, want.body)
	}
	if e, _ := c.get(w, "b", now); e != nil {
		t.Fatalf("an answer with another deployment waiting was kept: %s", e.body)
	}
	c.put(racing, before, s.renderPoll(alone, "b", now))
	if e, _ := c.get(racing, "b", now); e != nil {
		t.Fatal("an answer computed before the end was stored after it")
	}
}

// renderer is a server that renders poll answers with a 30 s poll, each
// answer kept at most maxAge (0: until invalidated), and nothing else.
func renderer(maxAge time.Duration) *Server {
	return &Server{core: &core.Core{Config: core.Config{PollInterval: 30 * time.Second}}, opts: Options{MaxCacheAge: maxAge}}
}
