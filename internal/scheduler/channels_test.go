package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
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
