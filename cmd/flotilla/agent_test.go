package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// flotillaBinary builds this command once per test run, for tests that
// need real processes (to SIGKILL them).
func flotillaBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flotilla-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "flotilla")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// agentProc is a `flotilla agent` process.
type agentProc struct {
	cmd    *exec.Cmd
	log    *bytes.Buffer
	target string
	state  string
}

func startAgent(t *testing.T, s *servertest.Server, id, token, target, stateDir string, extra ...string) *agentProc {
	t.Helper()
	args := append([]string{"agent", "--server", s.URL, "--device-id", id, "--token", token, "--target", target,
		"--state-dir", stateDir, "--current-version", "1.0.0", "--first-check", "50ms", "--log-level", "debug"}, extra...)
	cmd := exec.Command(flotillaBinary(t), args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Env = append(os.Environ(), "FLOTILLA_CONFIG=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, log: &log, target: target, state: stateDir}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", id, log.String())
		}
	})
	return p
}

func (p *agentProc) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	}
}

func (p *agentProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

func TestAgentsAndSDKDevices(t *testing.T) {
	s := servertest.Start(t)
	v2 := append([]byte("healthy build 2.0.0\n"), randomBytes(1_500_000, 20)...)
	s.API.Upload("kiosk-fw", "2.0.0", v2, "filename=kiosk.bin")

	// Three agent processes; agent-0 downloads slowly so it can be killed
	// mid-download.
	dir := t.TempDir()
	var agents []*agentProc
	var tokens []string
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("agent-%d", i)
		tok := s.API.CreateDevice(id, map[string]string{"kind": "agent"})
		tokens = append(tokens, tok)
		target := filepath.Join(dir, id, "kiosk.bin")
		os.MkdirAll(filepath.Dir(target), 0o755)
		os.WriteFile(target, []byte("healthy build 1.0.0\n"), 0o755)
		extra := []string{"--health-command", "grep -q healthy " + target, "--health-grace", "1s", "--health-interval", "100ms"}
		if i == 0 {
			extra = append(extra, "--max-download-rate", "150000")
		}
		agents = append(agents, startAgent(t, s, id, tok, target, filepath.Join(dir, id, "state"), extra...))
	}
	// Twenty SDK devices in this process.
	var installed sync.Map
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("sdk-%02d", i)
		tok := s.API.CreateDevice(id, map[string]string{"kind": "sdk"})
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0",
			Handler: &recordInstaller{id: id, got: &installed}, StateDir: filepath.Join(dir, id),
			FirstCheck: updater.Interval{Min: time.Millisecond, Max: 100 * time.Millisecond}})
	}

	deps := map[string]int64{}
	for i := 0; i < 3; i++ {
		deps[fmt.Sprintf("agent-%d", i)] = s.API.Assign(fmt.Sprintf("agent-%d", i), "kiosk-fw", "2.0.0", nil).ID
	}
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("sdk-%02d", i)
		deps[id] = s.API.Assign(id, "kiosk-fw", "2.0.0", nil).ID
	}

	// Kill agent-0 once part of its download is on disk, then restart it
	// without the rate limit: it must resume with a Range request.
	a0 := agents[0]
	var partSize int64
	servertest.Eventually(t, 20*time.Second, func() error {
		parts, _ := filepath.Glob(filepath.Join(a0.state, "updater", "downloads", "*", "kiosk.bin.part"))
		if len(parts) == 1 {
			if st, err := os.Stat(parts[0]); err == nil && st.Size() > 200_000 {
				partSize = st.Size()
				return nil
			}
		}
		return fmt.Errorf("no partial download yet")
	})
	a0.kill()
	if partSize >= int64(len(v2)) {
		t.Fatalf("agent-0 finished before it was killed (%d bytes)", partSize)
	}
	rangesBefore := s.Metric(t, `flotilla_ddi_downloads_total{kind="range"}`)
	agents[0] = startAgent(t, s, "agent-0", tokens[0], a0.target, a0.state)

	for id, did := range deps {
		if got := s.API.WaitDeployment(id, did, 60*time.Second, "succeeded", "failed", "canceled"); got.State != "succeeded" {
			t.Fatalf("%s: %s (%s)", id, got.State, got.Message)
		}
	}
	if s.Metric(t, `flotilla_ddi_downloads_total{kind="range"}`) <= rangesBefore {
		t.Fatal("restarted agent-0 did not resume with a Range request")
	}
	if !strings.Contains(agents[0].log.String(), "resuming download") {
		t.Fatalf("agent-0 log does not show a resumed download:\n%s", agents[0].log.String())
	}
	for _, a := range agents {
		if b, _ := os.ReadFile(a.target); !bytes.Equal(b, v2) {
			t.Fatalf("%s holds %d bytes, not version 2.0.0", a.target, len(b))
		}
	}
	for i := 0; i < 20; i++ {
		if v, _ := installed.Load(fmt.Sprintf("sdk-%02d", i)); v != "2.0.0" {
			t.Fatalf("sdk-%02d installed %v", i, v)
		}
	}

	// A tampered blob: agent-1 reports failed and keeps 2.0.0.
	v3 := append([]byte("healthy build 3.0.0\n"), randomBytes(100_000, 30)...)
	art3 := s.API.Upload("kiosk-fw", "3.0.0", v3, "filename=kiosk.bin")
	blobPath := filepath.Join(s.DataDir, "blobs", "objects", art3.SHA256[:2], art3.SHA256)
	b, _ := os.ReadFile(blobPath)
	b[len(b)-1] ^= 1
	os.WriteFile(blobPath, b, 0o644)
	d := s.API.Assign("agent-1", "kiosk-fw", "3.0.0", nil)
	got := s.API.WaitDeployment("agent-1", d.ID, 30*time.Second, "succeeded", "failed")
	if got.State != "failed" || !strings.Contains(got.Message, "checksum mismatch") {
		t.Fatalf("tampered: %s (%s)", got.State, got.Message)
	}
	if b, _ := os.ReadFile(agents[1].target); !bytes.Equal(b, v2) {
		t.Fatal("agent-1 changed its target after a tampered download")
	}

	// An unhealthy version: agent-2 installs it, the health check fails,
	// it rolls back and reports failed.
	bad := append([]byte("broken build 3.1.0\n"), randomBytes(10_000, 31)...)
	s.API.Upload("kiosk-fw", "3.1.0", bad, "filename=kiosk.bin")
	d = s.API.Assign("agent-2", "kiosk-fw", "3.1.0", nil)
	got = s.API.WaitDeployment("agent-2", d.ID, 30*time.Second, "succeeded", "failed")
	if got.State != "failed" || got.Healthy == nil || *got.Healthy || !strings.Contains(strings.Join(got.History[len(got.History)-1].Details, " "), "rolled back") {
		t.Fatalf("unhealthy: %s healthy=%v history %+v", got.State, got.Healthy, got.History[len(got.History)-1])
	}
	if b, _ := os.ReadFile(agents[2].target); !bytes.Equal(b, v2) {
		t.Fatal("agent-2 did not roll back to 2.0.0")
	}
	var dev struct{ Version string }
	s.API.Must(200, "GET", "/api/v1/devices/agent-2", nil, &dev)
	if dev.Version != "2.0.0" {
		t.Fatalf("agent-2 version after rollback = %s", dev.Version)
	}
}

// recordInstaller remembers the version each SDK device installed.
type recordInstaller struct {
	updater.DefaultFetcher
	id  string
	got *sync.Map
}

func (r *recordInstaller) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	r.got.Store(r.id, u.Version)
	return nil
}

func TestAgentCancels(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("fw", "2.0.0", randomBytes(1_000_000, 40), "")
	dir := t.TempDir()

	// Cancel while downloading: the deployment ends canceled.
	tok := s.API.CreateDevice("slow", nil)
	startAgent(t, s, "slow", tok, filepath.Join(dir, "slow.bin"), filepath.Join(dir, "slow"), "--max-download-rate", "100000")
	d := s.API.Assign("slow", "fw", "2.0.0", nil)
	s.API.WaitDeployment("slow", d.ID, 20*time.Second, "downloading")
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/slow/deployments/%d/cancel", d.ID), nil, nil)
	if got := s.API.WaitDeployment("slow", d.ID, 30*time.Second, "canceled", "succeeded", "failed"); got.State != "canceled" {
		t.Fatalf("cancel while downloading: %s", got.State)
	}
	if _, err := os.Stat(filepath.Join(dir, "slow.bin")); err == nil {
		t.Fatal("canceled update was installed")
	}

	// Cancel once the install command runs: the agent rejects it and the
	// deployment ends succeeded.
	tok = s.API.CreateDevice("busy", nil)
	target := filepath.Join(dir, "busy.bin")
	marker := filepath.Join(dir, "installing")
	cmd := fmt.Sprintf("touch %s; sleep 2; cp {file} %s", marker, target)
	startAgentCmd(t, s, "busy", tok, filepath.Join(dir, "busy"), cmd)
	d = s.API.Assign("busy", "fw", "2.0.0", nil)
	servertest.Eventually(t, 20*time.Second, func() error {
		_, err := os.Stat(marker)
		return err
	})
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/busy/deployments/%d/cancel", d.ID), nil, nil)
	got := s.API.WaitDeployment("busy", d.ID, 30*time.Second, "succeeded", "canceled", "failed")
	if got.State != "succeeded" {
		t.Fatalf("cancel during install: %s", got.State)
	}
	rejected := false
	for _, ev := range got.History {
		rejected = rejected || ev.Execution == "rejected"
	}
	if !rejected {
		t.Fatalf("the agent did not reject the cancel: %+v", got.History)
	}
}

// startAgentCmd starts an agent with an install command.
func startAgentCmd(t *testing.T, s *servertest.Server, id, token, stateDir, install string) *agentProc {
	t.Helper()
	cmd := exec.Command(flotillaBinary(t), "agent", "--server", s.URL, "--device-id", id, "--token", token,
		"--install-command", install, "--state-dir", stateDir, "--current-version", "1.0.0", "--first-check", "50ms")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, log: &log, state: stateDir}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", id, log.String())
		}
	})
	return p
}
