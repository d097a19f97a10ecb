package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
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

// TestDemoSaysWhyARolloutPaused: with failing devices the demo explains
// the success threshold up front, and when a wave falls short it prints
// why the rollout paused and how to go on.
func TestDemoSaysWhyARolloutPaused(t *testing.T) {
	p := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "demo", "--listen", "127.0.0.1:0", "--devices", "4", "--poll", "300ms", "--fail-rate", "1")
	if out := p.Output(); !strings.Contains(out, "success_threshold") || !strings.Contains(out, `"policy":{"success_threshold":0}`) {
		t.Fatalf("the banner does not explain the success threshold:\n%s", out)
	}
	api := &servertest.API{T: t, Base: p.URL, Token: adminSecret}
	servertest.Eventually(t, 30*time.Second, func() error {
		var list struct{ Items []struct{ ID string } }
		api.Must(200, "GET", "/api/v1/devices?limit=100", nil, &list)
		if len(list.Items) != 4 {
			return fmt.Errorf("%d demo devices registered", len(list.Items))
		}
		return nil
	})
	var ro struct{ ID string }
	api.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "demo", "artifact": map[string]string{"name": "demo-firmware", "version": "2.0.0"},
		"selector": "fleet=kiosk", "waves": 2, "start": true}, &ro)
	servertest.Eventually(t, 30*time.Second, func() error {
		out := p.Output()
		for _, want := range []string{`rollout "demo": wave 1 finished below its success threshold`, `rollout "demo" is paused`, "success_threshold (default 100%", "/resume"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("no %q in the output:\n%s", want, out)
			}
		}
		return nil
	})
	// The printed way on works.
	api.Must(200, "POST", "/api/v1/rollouts/"+ro.ID+"/resume", nil, nil)
	servertest.Eventually(t, 30*time.Second, func() error {
		if out := p.Output(); !strings.Contains(out, `rollout "demo": wave 2 started`) {
			return fmt.Errorf("wave 2 did not start after resume:\n%s", out)
		}
		return nil
	})
}

// TestBusyPortNamesListen: a port in use is reported with the flag that
// picks another.
func TestBusyPortNamesListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, cmd := range []string{"server", "demo"} {
		var out bytes.Buffer
		err := run(context.Background(), []string{cmd, "--listen", ln.Addr().String(), "--data-dir", t.TempDir()}, testEnv(), &out, &out)
		if err == nil || !strings.Contains(err.Error(), "--listen") || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("%s on a busy port: %v", cmd, err)
		}
	}
}
