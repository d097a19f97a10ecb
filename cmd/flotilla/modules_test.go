package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// moduleRelease makes modules os and app with two files each and a
// release of them (os first), through the native API; it returns the
// release and the files' bytes by name.
func moduleRelease(t *testing.T, api *servertest.API, name, version string) map[string][]byte {
	files := map[string][]byte{}
	var ids []int64
	for _, m := range []struct{ name, typ string }{{"rootfs", "os"}, {"kiosk-app", "application"}} {
		var mod struct{ ID int64 }
		api.Must(201, "POST", "/api/v1/modules", map[string]any{"name": m.name, "version": version, "type": m.typ, "vendor": "acme"}, &mod)
		for _, f := range []string{m.name + ".img", m.name + ".sig"} {
			b := []byte(fmt.Sprintf("%s %s %s\n", m.name, version, f))
			api.Must(201, "PUT", fmt.Sprintf("/api/v1/modules/%d/files/%s", mod.ID, f), b, nil)
			files[f] = b
		}
		ids = append(ids, mod.ID)
	}
	api.Must(201, "POST", "/api/v1/releases", map[string]any{"name": name, "version": version, "modules": ids}, nil)
	return files
}

type moduleRecorder struct {
	updater.DefaultFetcher
	mu  sync.Mutex
	got []string // "module part: file=content"
}

func (r *moduleRecorder) Apply(_ context.Context, u *updater.Update, p *updater.Payload) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range u.Modules {
		for _, f := range u.ModuleFiles(p, i) {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			r.got = append(r.got, fmt.Sprintf("%s %s %s: %s=%s", m.Name, m.Version, m.Part, filepath.Base(f), strings.TrimSpace(string(b))))
		}
	}
	r.got = append(r.got, "release "+u.Name+" "+u.Version)
	return nil
}

// TestMultiModuleRelease: a release of two modules with two files each,
// made through the native API, reaches an SDK device as two chunks in
// order, and an agent whose install command runs once per module; when
// the second module's command fails, the first is rolled back.
func TestMultiModuleRelease(t *testing.T) {
	s := servertest.Start(t)
	moduleRelease(t, s.API, "kiosk-os", "2.0.0")
	var rel struct {
		Size    int64
		Modules []struct {
			ID    int64
			Name  string
			Files []struct{ Filename string }
		}
	}
	s.API.Must(200, "GET", "/api/v1/artifacts/kiosk-os/2.0.0", nil, &rel)
	if rel.Size != 0 || len(rel.Modules) != 2 || rel.Modules[0].Name != "rootfs" || len(rel.Modules[1].Files) != 2 {
		t.Fatalf("release = %+v", rel)
	}
	// A module in a release is fixed.
	code, body := s.API.Do("PUT", fmt.Sprintf("/api/v1/modules/%d/files/late.bin", rel.Modules[0].ID), []byte("x"))
	if code != 409 {
		t.Fatalf("upload into a module of a release: %d %s", code, body)
	}

	tok := s.API.CreateDevice("sdk-1", nil)
	rec := &moduleRecorder{}
	s.StartDevice(t, updater.Config{ControllerID: "sdk-1", Token: tok, CurrentVersion: "1.0.0", Handler: rec, ActiveInterval: 200 * time.Millisecond})
	d := s.API.Assign("sdk-1", "kiosk-os", "2.0.0", nil)
	if got := s.API.WaitDeployment("sdk-1", d.ID, 20*time.Second, "succeeded", "failed"); got.State != "succeeded" {
		t.Fatalf("SDK device: %+v", got)
	}
	want := []string{
		"rootfs 2.0.0 os: rootfs.img=rootfs 2.0.0 rootfs.img", "rootfs 2.0.0 os: rootfs.sig=rootfs 2.0.0 rootfs.sig",
		"kiosk-app 2.0.0 application: kiosk-app.img=kiosk-app 2.0.0 kiosk-app.img", "kiosk-app 2.0.0 application: kiosk-app.sig=kiosk-app 2.0.0 kiosk-app.sig",
		"release kiosk-os 2.0.0",
	}
	if strings.Join(rec.got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the SDK device saw:\n%s\nwant:\n%s", strings.Join(rec.got, "\n"), strings.Join(want, "\n"))
	}

	// The agent: one install call per module, in order.
	dir := t.TempDir()
	log := filepath.Join(dir, "install.log")
	tok = s.API.CreateDevice("agent-1", nil)
	startAgentCmd(t, s, "agent-1", tok, filepath.Join(dir, "state"), "echo install {name} {version} {part} {release} {release_version} $(cat {files} | wc -l) >> "+log)
	d = s.API.Assign("agent-1", "kiosk-os", "2.0.0", nil)
	if got := s.API.WaitDeployment("agent-1", d.ID, 20*time.Second, "succeeded", "failed"); got.State != "succeeded" {
		t.Fatalf("agent: %+v", got)
	}
	b, _ := os.ReadFile(log)
	if got := string(b); got != "install rootfs 2.0.0 os kiosk-os 2.0.0 2\ninstall kiosk-app 2.0.0 application kiosk-os 2.0.0 2\n" {
		t.Fatalf("install log:\n%s", got)
	}

	// The second module fails: the first is rolled back, the update fails.
	moduleRelease(t, s.API, "kiosk-os", "3.0.0")
	tok = s.API.CreateDevice("agent-2", nil)
	log2 := filepath.Join(dir, "install2.log")
	cmd := exec.Command(flotillaBinary(t), "agent", "--server", s.URL, "--device-id", "agent-2", "--token", tok,
		"--install-command", "echo install {name} >> "+log2+"; test {part} = os", "--rollback-command", "echo rollback {name} >> "+log2,
		"--state-dir", filepath.Join(dir, "state2"), "--current-version", "1.0.0", "--first-check", "50ms")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d = s.API.Assign("agent-2", "kiosk-os", "3.0.0", nil)
	got := s.API.WaitDeployment("agent-2", d.ID, 20*time.Second, "succeeded", "failed")
	if got.State != "failed" || !strings.Contains(got.Message, "kiosk-app") || !strings.Contains(got.Message, "rolled back") {
		t.Fatalf("failing second module: %+v\n%s", got, out.String())
	}
	b, _ = os.ReadFile(log2)
	if string(b) != "install rootfs\ninstall kiosk-app\nrollback rootfs\n" {
		t.Fatalf("install log with a failure:\n%s", b)
	}
}

// TestModuleCLI: modules, their files and a release of them from the CLI.
func TestModuleCLI(t *testing.T) {
	s := servertest.Start(t)
	env := testEnv("FLOTILLA_SERVER="+s.URL, "FLOTILLA_TOKEN="+servertest.AdminToken)
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), args, env, &out, &out); err != nil {
			t.Fatalf("flotilla %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	dir := t.TempDir()
	var ids []string
	for _, m := range []struct{ name, typ string }{{"rootfs", "os"}, {"app", "application"}} {
		out := cli("module", "create", "--name", m.name, "--version", "4.0", "--type", m.typ, "-o", "json")
		var mod struct{ ID int64 }
		if err := json.Unmarshal([]byte(out), &mod); err != nil {
			t.Fatalf("module create -o json: %v: %s", err, out)
		}
		f := filepath.Join(dir, m.name+".bin")
		os.WriteFile(f, []byte(m.name+" 4.0"), 0o644)
		if out := cli("module", "upload", fmt.Sprint(mod.ID), f); !strings.Contains(out, m.name+".bin") {
			t.Fatalf("module upload: %s", out)
		}
		ids = append(ids, fmt.Sprint(mod.ID))
	}
	out := cli("release", "create", "kiosk", "4.0", "--module", ids[0], "--module", ids[1])
	if !strings.Contains(out, "module 1\trootfs 4.0 (os, 1 files)") && !strings.Contains(out, "rootfs 4.0 (os, 1 files)") {
		t.Fatalf("release create: %s", out)
	}
	if out := cli("artifact", "ls"); !strings.Contains(out, "kiosk") || !strings.Contains(out, "modules") {
		t.Fatalf("artifact ls: %s", out)
	}
	if out := cli("module", "list"); !strings.Contains(out, "rootfs") || !strings.Contains(out, "application") {
		t.Fatalf("module list: %s", out)
	}
}
