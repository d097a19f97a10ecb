package main

import (
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
)

var dataDirRE = regexp.MustCompile(`data dir\s+(\S+)`)

// TestDemo is the newcomer's path: `flotilla demo` starts a server with a
// simulated fleet and sample artifacts; a rollout through the API updates
// every demo device; the temporary data directory goes away on exit.
func TestDemo(t *testing.T) {
	p := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "demo", "--listen", "127.0.0.1:0", "--devices", "20", "--poll", "500ms")
	api := &servertest.API{T: t, Base: p.URL, Token: adminSecret}
	type device struct{ ID, Version string }
	devices := func() []device {
		var list struct{ Items []device }
		api.Must(200, "GET", "/api/v1/devices?selector=fleet%3Dkiosk&limit=100", nil, &list)
		return list.Items
	}
	servertest.Eventually(t, 30*time.Second, func() error {
		if n := len(devices()); n != 20 {
			return fmt.Errorf("%d demo devices registered", n)
		}
		return nil
	})
	var ro struct{ ID, Status string }
	api.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "demo", "artifact": map[string]string{"name": "demo-firmware", "version": "2.0.0"},
		"selector": "fleet=kiosk", "waves": 3, "start": true}, &ro)
	servertest.Eventually(t, 60*time.Second, func() error {
		api.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	for _, d := range devices() {
		if d.Version != "2.0.0" {
			t.Fatalf("%s runs %q after the rollout", d.ID, d.Version)
		}
	}
	m := dataDirRE.FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("no data dir in the banner:\n%s", p.Output())
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("demo exited with %v", err)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Fatalf("temporary data dir %s left behind (%v)", m[1], err)
	}
}

// TestServerDemoFlag: `flotilla server --demo N` is the same demo on the
// server's own data directory, which stays.
func TestServerDemoFlag(t *testing.T) {
	dir := t.TempDir()
	p := start(t, testEnv(), "server", "--listen", "127.0.0.1:0", "--data-dir", dir, "--demo", "5")
	tok, err := os.ReadFile(dir + "/admin-token")
	if err != nil {
		t.Fatalf("admin token not saved: %v\n%s", err, p.Output())
	}
	api := &servertest.API{T: t, Base: p.URL, Token: string(tok[:len(tok)-1])}
	servertest.Eventually(t, 30*time.Second, func() error {
		var list struct{ Items []struct{ ID string } }
		api.Must(200, "GET", "/api/v1/devices?limit=100", nil, &list)
		if len(list.Items) != 5 {
			return fmt.Errorf("%d devices", len(list.Items))
		}
		return nil
	})
	api.Must(200, "GET", "/api/v1/artifacts/demo-firmware/2.0.0", nil, nil)
	p.Stop()
	if _, err := os.Stat(dir + "/flotilla.db"); err != nil {
		t.Fatalf("server --demo removed its data: %v", err)
	}
}
