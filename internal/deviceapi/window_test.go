package deviceapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
)

// TestBackoffTableOverDDI: every row of hawkBit's table (seed 002) is what
// a device with a pending update receives in config.polling.sleep, with
// the defaults: polling 5:00, minimum 0:30, three polls.
func TestBackoffTableOverDDI(t *testing.T) {
	s := servertest.Start(t, servertest.WithPollInterval(5*time.Minute))
	tok := s.API.CreateDevice("dev-1", nil)
	s.API.Upload("fw", "2.0.0", []byte("fw"), "")
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	start := day.Add(12 * time.Hour) // the window: daily 12:00-13:00 UTC
	s.Clock().Set(day)
	s.API.Assign("dev-1", "fw", "2.0.0", map[string]any{"maintenance_window": map[string]string{"schedule": "0 0 12 * * ?", "duration": "01:00:00", "timezone": "UTC"}})
	d := device{t: t, base: s.URL + "/default/controller/v1/dev-1", auth: "TargetToken " + tok}
	for _, row := range []struct {
		until time.Duration
		sleep string
	}{
		{21 * time.Minute, "00:05:00"},
		{16 * time.Minute, "00:05:00"},
		{11 * time.Minute, "00:03:40"},
		{7*time.Minute + 20*time.Second, "00:02:27"},
		{4*time.Minute + 53*time.Second, "00:01:38"},
		{2*time.Minute + 10*time.Second, "00:00:43"},
		{time.Minute + 27*time.Second, "00:00:30"},
		{57 * time.Second, "00:00:30"},
		{27 * time.Second, "00:00:30"},
		{-3 * time.Second, "00:05:00"},
	} {
		s.Clock().Set(start.Add(-row.until))
		p, _ := d.poll()
		if p.Config.Polling.Sleep != row.sleep {
			t.Errorf("time until start %v: polling.sleep %s, want %s", row.until, p.Config.Polling.Sleep, row.sleep)
		}
		// Outside the window the update is "skip"; inside it is "forced".
		_, b := d.req("GET", strings.TrimPrefix(p.Links.DeploymentBase.Href, d.base), nil)
		wantUpdate, wantWindow := `"update":"skip"`, `"maintenanceWindow":"unavailable"`
		if row.until < 0 {
			wantUpdate, wantWindow = `"update":"forced"`, `"maintenanceWindow":"available"`
		}
		if !strings.Contains(string(b), wantUpdate) || !strings.Contains(string(b), wantWindow) {
			t.Errorf("time until start %v: deploymentBase %s, want %s and %s", row.until, b, wantUpdate, wantWindow)
		}
	}
}

func TestLapsedScheduleIsRefused(t *testing.T) {
	s := servertest.Start(t)
	s.API.CreateDevice("dev-1", nil)
	s.API.Upload("fw", "2.0.0", []byte("fw"), "")
	code, b := s.API.Do("POST", "/api/v1/devices/dev-1/deployments", map[string]any{"artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"maintenance_window": map[string]string{"schedule": "0 0 23 ? * SAT 2017", "duration": "00:30:00", "timezone": "+02:00"}})
	if code != 400 || !strings.Contains(string(b), "no window in the 5 years") {
		t.Fatalf("lapsed schedule = %d %s", code, b)
	}
	// Schedules that never open, or not for decades, would hold the
	// deployment forever: refused, naming the schedule.
	for _, sched := range []string{"0 0 2 30 2 ?", "0 0 2 29 2 ? 2099", "0 0 2 31 4 ?"} {
		code, b := s.API.Do("POST", "/api/v1/devices/dev-1/deployments", map[string]any{"artifact": map[string]string{"name": "fw", "version": "2.0.0"},
			"maintenance_window": map[string]string{"schedule": sched, "duration": "01:00:00", "timezone": "UTC"}})
		if code != 400 || !strings.Contains(string(b), sched) {
			t.Errorf("schedule %q = %d %s, want 400 naming it", sched, code, b)
		}
	}
	var list struct{ Items []any }
	s.API.Must(200, "GET", "/api/v1/devices/dev-1/deployments", nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("refused assignments left %d deployments", len(list.Items))
	}
	for _, w := range []map[string]string{
		{"schedule": "0 0 23 * *", "duration": "00:30:00"},
		{"schedule": "0 0 23 ? * SAT", "duration": "half an hour"},
		{"schedule": "0 0 23 ? * SAT", "duration": "00:30:00", "timezone": "Moon/Base"},
	} {
		code, b := s.API.Do("POST", "/api/v1/devices/dev-1/deployments", map[string]any{"artifact": map[string]string{"name": "fw", "version": "2.0.0"}, "maintenance_window": w})
		if code != 400 {
			t.Errorf("window %v = %d %s, want 400", w, code, b)
		}
	}
}
