package scheduler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
)

// TestLapsedScheduleCancels: once a maintenance schedule has no window
// left, the deployments waiting for it are canceled — on the server if the
// device never fetched them, through cancelAction if it did — and a
// rollout with that schedule ends.
func TestLapsedScheduleCancels(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	s.Clock().Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	once := map[string]string{"schedule": "0 0 12 1 1 ? 2027", "duration": "01:00:00", "timezone": "UTC"} // one window, 2027-01-01
	s.API.Upload("fw", "2.0.0", []byte("fw"), "")
	tokA := s.API.CreateDevice("dev-a", nil)
	s.API.CreateDevice("dev-b", nil)
	s.API.CreateDevice("dev-c", map[string]string{"group": "r"})
	a := s.API.Assign("dev-a", "fw", "2.0.0", map[string]any{"maintenance_window": once})
	b := s.API.Assign("dev-b", "fw", "2.0.0", map[string]any{"maintenance_window": once})
	// dev-a fetches its deployment; dev-b never does.
	fetch(t, s, "dev-a", tokA, a.ID)
	var ro struct{ ID, Status string }
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "windowed", "artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"selector": "group=r", "maintenance_window": once, "start": true}, &ro)

	s.Clock().Set(time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC))
	s.API.WaitDeployment("dev-b", b.ID, 10*time.Second, "canceled")
	s.API.WaitDeployment("dev-a", a.ID, 10*time.Second, "cancel_requested")
	servertest.Eventually(t, 10*time.Second, func() error {
		s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "failed" {
			return fmt.Errorf("rollout is %s", ro.Status)
		}
		return nil
	})
}

// fetch has a device read its deployment, as a DDI client does.
func fetch(t *testing.T, s *servertest.Server, device, token string, id int64) {
	t.Helper()
	d := &servertest.API{T: t, Base: s.URL}
	req := fmt.Sprintf("/default/controller/v1/%s/deploymentBase/%d", device, id)
	code, body := doDDI(t, d.Base+req, token)
	if code != 200 {
		t.Fatalf("deploymentBase = %d %s", code, body)
	}
}
