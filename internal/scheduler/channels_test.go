package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

type versionRecorder struct {
	updater.DefaultFetcher
	got chan string
}

func (v versionRecorder) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	v.got <- u.Version
	return nil
}

// TestChannelsAndSupersede: publishing a version to a channel rolls it out
// to the devices that follow the channel; a rollout supersedes a device's
// older, never-fetched assignment, and that assignment shows canceled.
func TestChannelsAndSupersede(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	s.API.Upload("app", "2.0.0", []byte("app 2"), "")
	s.API.Upload("app", "3.0.0", []byte("app 3"), "")
	gw := s.API.GatewayToken()
	got := make(chan string, 100)
	// An offline device on the channel holds an older direct assignment.
	s.API.CreateDevice("offline-1", map[string]string{"channel": "beta"})
	old := s.API.Assign("offline-1", "app", "2.0.0", nil)
	for i := 0; i < 5; i++ {
		c, err := updater.New(updater.Config{Server: s.URL, ControllerID: fmt.Sprintf("beta-%d", i), GatewayToken: gw, CurrentVersion: "1.0.0",
			Channel: "beta", Handler: versionRecorder{got: got}, StateDir: filepath.Join(t.TempDir(), fmt.Sprint(i)),
			Logger: slog.New(slog.DiscardHandler), FirstCheck: updater.Interval{Min: time.Millisecond, Max: 10 * time.Millisecond}, ActiveInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		c.CheckNow(context.Background()) // registers itself with the channel label
		c.Start(context.Background())
		t.Cleanup(c.Stop)
	}
	var ch struct {
		RolloutID string `json:"rollout_id"`
		Rollout   *struct{ Status string }
	}
	s.API.Must(201, "PUT", "/api/v1/channels/beta", map[string]any{"artifact": map[string]string{"name": "app", "version": "2.0.0"},
		"policy": map[string]any{"min_success_ratio": 0.8}, "waves": 2}, &ch)
	if ch.RolloutID == "" || ch.Rollout == nil {
		t.Fatalf("publishing to a channel started no rollout: %+v", ch)
	}
	// The old assignment was never fetched: superseded means canceled.
	if d := s.API.Deployment("offline-1", old.ID); d.State != "canceled" {
		t.Fatalf("superseded assignment is %s", d.State)
	}
	for i := 0; i < 5; i++ {
		select {
		case v := <-got:
			if v != "2.0.0" {
				t.Fatalf("installed %s", v)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 5 channel devices updated", i)
		}
	}
	// offline-1 never polls, so the first rollout is still running when
	// the next version is published.
	first := ch.RolloutID
	// Publishing the next version replaces the running rollout.
	s.API.Must(200, "PUT", "/api/v1/channels/beta", map[string]any{"artifact": map[string]string{"name": "app", "version": "3.0.0"}}, &ch)
	if ch.RolloutID == first {
		t.Fatal("a new version did not start a new rollout")
	}
	var prev struct{ Status string }
	s.API.Must(200, "GET", "/api/v1/rollouts/"+first, nil, &prev)
	if prev.Status != "aborted" && prev.Status != "completed" && prev.Status != "partial" {
		t.Fatalf("previous channel rollout is %s", prev.Status)
	}
	for i := 0; i < 5; i++ {
		select {
		case v := <-got:
			if v != "3.0.0" {
				t.Fatalf("installed %s", v)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 5 channel devices got 3.0.0", i)
		}
	}
	var list struct{ Items []struct{ Status string } }
	s.API.Must(200, "GET", "/api/v1/rollouts?channel=beta", nil, &list)
	if len(list.Items) != 2 {
		t.Fatalf("channel rollouts = %+v", list.Items)
	}
}

type failingInstall struct{ updater.DefaultFetcher }

func (failingInstall) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	return errors.New("flash write failed (simulated)")
}

// TestChannelCatchUp: a device that joins a channel after its release gets
// the channel's version (Nebraska's model: a device on "stable" runs what
// "stable" points at), while devices on another channel, devices already on
// the version, and a device whose install of it failed are left alone. A
// paused release does not spread until it resumes.
func TestChannelCatchUp(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	s.API.Upload("app", "2.0.0", []byte("app 2"), "")
	s.API.Upload("app", "3.0.0", []byte("app 3"), "")
	gw := s.API.GatewayToken()
	device := func(id, channel, version string, h updater.Handler) {
		c, err := updater.New(updater.Config{Server: s.URL, ControllerID: id, GatewayToken: gw, CurrentVersion: version,
			Channel: channel, Handler: h, StateDir: filepath.Join(t.TempDir(), id),
			Logger: slog.New(slog.DiscardHandler), FirstCheck: updater.Interval{Min: time.Millisecond, Max: 10 * time.Millisecond}, ActiveInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		c.CheckNow(context.Background()) // registers with its channel label and version
		c.Start(context.Background())
		t.Cleanup(c.Stop)
	}
	deployments := func(id string) []servertest.Deployment {
		var list struct{ Items []servertest.Deployment }
		s.API.Must(200, "GET", "/api/v1/devices/"+id+"/deployments", nil, &list)
		return list.Items
	}
	waitVersion := func(id, want string) {
		servertest.Eventually(t, 30*time.Second, func() error {
			var d struct{ Version string }
			s.API.Must(200, "GET", "/api/v1/devices/"+id, nil, &d)
			if d.Version != want {
				return fmt.Errorf("%s runs %q, want %s", id, d.Version, want)
			}
			return nil
		})
	}

	got := make(chan string, 10)
	device("early", "stable", "1.0.0", versionRecorder{got: got})
	var ch struct {
		RolloutID string `json:"rollout_id"`
	}
	s.API.Must(201, "PUT", "/api/v1/channels/stable", map[string]any{"artifact": map[string]string{"name": "app", "version": "2.0.0"}}, &ch)
	waitVersion("early", "2.0.0")
	servertest.Eventually(t, 30*time.Second, func() error {
		var r struct{ Status string }
		s.API.Must(200, "GET", "/api/v1/rollouts/"+ch.RolloutID, nil, &r)
		if r.Status != "completed" {
			return fmt.Errorf("channel rollout %s", r.Status)
		}
		return nil
	})

	// Late arrivals, after the release finished.
	device("late", "stable", "1.0.0", versionRecorder{got: got})
	device("other-channel", "beta", "1.0.0", versionRecorder{got: got})
	device("current", "stable", "2.0.0", versionRecorder{got: got})
	device("broken", "stable", "1.0.0", failingInstall{})
	waitVersion("late", "2.0.0")
	ds := deployments("late")
	if len(ds) != 1 || ds[0].RolloutID != "" || !strings.Contains(ds[0].History[0].Details[0], "channel stable") {
		t.Fatalf("late device's deployments: %+v", ds)
	}
	servertest.Eventually(t, 30*time.Second, func() error {
		ds := deployments("broken")
		if len(ds) != 1 || ds[0].State != "failed" {
			return fmt.Errorf("broken device's deployments: %+v", ds)
		}
		return nil
	})
	// Touching the failed device's labels does not retry behind the
	// operator's back.
	s.API.Must(200, "PATCH", "/api/v1/devices/broken", map[string]any{"labels": map[string]string{"channel": "stable", "site": "b"}}, nil)
	for _, id := range []string{"other-channel", "current"} {
		if ds := deployments(id); len(ds) != 0 {
			t.Fatalf("%s got deployments: %+v", id, ds)
		}
	}
	if ds := deployments("broken"); len(ds) != 1 {
		t.Fatalf("a failed device was assigned again: %+v", ds)
	}

	// A paused release does not spread: pause the next one at once.
	s.API.Must(200, "PUT", "/api/v1/channels/stable", map[string]any{"artifact": map[string]string{"name": "app", "version": "3.0.0"}}, &ch)
	s.API.Must(200, "POST", "/api/v1/rollouts/"+ch.RolloutID+"/pause", nil, nil)
	// An operator moves a device onto the channel by label.
	s.API.Must(200, "PATCH", "/api/v1/devices/other-channel", map[string]any{"labels": map[string]string{"channel": "stable"}}, nil)
	if ds := deployments("other-channel"); len(ds) != 0 {
		t.Fatalf("a paused release reached a late device: %+v", ds)
	}
	// Resuming the release sweeps the channel: the device that joined
	// while it was paused catches up too.
	s.API.Must(200, "POST", "/api/v1/rollouts/"+ch.RolloutID+"/resume", nil, nil)
	waitVersion("other-channel", "3.0.0")
}
