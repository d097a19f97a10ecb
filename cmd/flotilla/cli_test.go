package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/cli"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// flakyInstaller fails while fail is set.
type flakyInstaller struct {
	updater.DefaultFetcher
	fail *atomic.Bool
}

func (f flakyInstaller) Apply(context.Context, *updater.Update, *updater.Payload) error {
	if f.fail.Load() {
		return errors.New("disk full")
	}
	return nil
}

// TestCLI runs the real binary against a real server: log in, push an
// artifact, create, start and watch a rollout to completion.
func TestCLI(t *testing.T) {
	bin := flotillaBinary(t)
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	var fail atomic.Bool
	for i := 0; i < 8; i++ {
		id := fmt.Sprintf("cli-%d", i)
		tok := s.API.CreateDevice(id, map[string]string{"site": "hq"})
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0", Handler: flakyInstaller{fail: &fail}})
	}
	cfg := filepath.Join(t.TempDir(), "cli.json")
	flotilla := func(args ...string) (string, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "FLOTILLA_CLI_CONFIG="+cfg, "FLOTILLA_SERVER=", "FLOTILLA_TOKEN=")
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, err := flotilla(args...)
		if err != nil {
			t.Fatalf("flotilla %v: %v\n%s%s", args, err, out, errOut)
		}
		return out
	}

	// Without a login, commands say what to do.
	if _, errOut, err := flotilla("device", "ls"); err == nil || !strings.Contains(errOut, "flotilla login") {
		t.Fatalf("device ls without login: %v %s", err, errOut)
	}
	must("login", "--server", s.URL, "--token", servertest.AdminToken)
	if st, _ := os.Stat(cfg); st.Mode().Perm() != 0o600 {
		t.Fatalf("saved login has mode %v", st.Mode().Perm())
	}

	fw := filepath.Join(t.TempDir(), "hq.bin")
	os.WriteFile(fw, []byte(strings.Repeat("hq firmware 2\n", 10000)), 0o644)
	if out := must("artifact", "push", fw, "--name", "hq-fw", "--version", "2.0.0"); !strings.Contains(out, "uploaded") || !strings.Contains(out, "hq-fw 2.0.0") {
		t.Fatalf("push output:\n%s", out)
	}
	var arts []struct{ Name, Version, SHA256 string }
	if err := json.Unmarshal([]byte(must("artifact", "ls", "-o", "json")), &arts); err != nil || len(arts) != 1 || arts[0].SHA256 == "" {
		t.Fatalf("artifact ls -o json: %v %+v", err, arts)
	}
	if out := must("device", "ls", "--selector", "site=hq"); strings.Count(out, "cli-") != 8 || !strings.Contains(out, "STATUS") {
		t.Fatalf("device ls:\n%s", out)
	}

	var r struct{ ID, Status string }
	json.Unmarshal([]byte(must("rollout", "create", "--name", "hq", "--artifact", "hq-fw:2.0.0", "--selector", "site=hq", "--waves", "2", "-o", "json")), &r)
	if r.ID == "" || r.Status != "ready" {
		t.Fatalf("created %+v", r)
	}
	must("rollout", "start", r.ID)
	out := must("rollout", "watch", r.ID, "--timeout", "60s")
	if !strings.Contains(out, "completed") || !strings.Contains(out, "wave-2") {
		t.Fatalf("watch output:\n%s", out)
	}
	if out := must("rollout", "show", r.ID); !strings.Contains(out, "completed") || !strings.Contains(out, "wave-1") {
		t.Fatalf("show:\n%s", out)
	}
	if out := must("device", "show", "cli-0"); !strings.Contains(out, "2.0.0") || !strings.Contains(out, "succeeded") {
		t.Fatalf("device show:\n%s", out)
	}

	// A rollout whose error gate trips: watch exits non-zero and says why.
	fail.Store(true)
	os.WriteFile(fw, []byte("hq firmware 3\n"), 0o644)
	must("artifact", "push", fw, "--name", "hq-fw", "--version", "3.0.0")
	json.Unmarshal([]byte(must("rollout", "create", "--name", "bad", "--artifact", "hq-fw:3.0.0", "--selector", "site=hq", "--start", "-o", "json",
		"--policy", `{"success_threshold": 50, "error_threshold": 100}`)), &r)
	if out, errOut, err := flotilla("rollout", "watch", r.ID, "--timeout", "60s"); err == nil || !strings.Contains(errOut, "paused: error gate") {
		t.Fatalf("watch of a failing rollout: err %v\n%s\n%s", err, out, errOut)
	}

	// API errors come through as the API's message.
	if _, errOut, err := flotilla("rollout", "start", "r-nope"); err == nil || !strings.Contains(errOut, `rollout "r-nope" not found`) {
		t.Fatalf("start of a missing rollout: %v %s", err, errOut)
	}
	var tok struct{ Token string }
	json.Unmarshal([]byte(must("token", "create", "--scopes", "devices:read", "-o", "json")), &tok)
	if !strings.HasPrefix(tok.Token, "flt_") {
		t.Fatalf("token create: %+v", tok)
	}
}

// TestMisuseExitsTwoWithASuggestion: a typo is a usage error (exit 2) that
// names what was probably meant, not help text and exit 0.
func TestMisuseExitsTwoWithASuggestion(t *testing.T) {
	for _, args := range [][]string{{"rollout", "strat", "x"}, {"rollout", "create", "--name", "n", "--artifact", "a:1"}, {"devcies"}} {
		var out bytes.Buffer
		err := run(context.Background(), args, testEnv("FLOTILLA_SERVER=http://127.0.0.1:1", "FLOTILLA_TOKEN=x"), &out, &out)
		if cli.ExitCode(err) != 2 {
			t.Fatalf("flotilla %v: exit %d (%v), want 2", args, cli.ExitCode(err), err)
		}
		t.Logf("flotilla %v: %v", args, err)
	}
	err := run(context.Background(), []string{"rollout", "strat", "x"}, testEnv(), io.Discard, io.Discard)
	if !strings.Contains(err.Error(), "did you mean start") {
		t.Fatalf("no suggestion: %v", err)
	}
}

// TestServerRefusesABadMemoryLimit: the server does not start on a limit
// it cannot read, and says what it wants.
func TestServerRefusesABadMemoryLimit(t *testing.T) {
	err := run(context.Background(), []string{"server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--memory-limit", "lots"}, testEnv(), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "768MiB") {
		t.Fatalf("server --memory-limit lots: %v", err)
	}
}

// TestMalformedEnvironmentIsRefused: a FLOTILLA_* variable that backs a
// flag but does not parse as its type stops the command with a message
// naming it, instead of silently meaning the default.
func TestMalformedEnvironmentIsRefused(t *testing.T) {
	// A server that starts anyway is stopped, and the test fails.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, kv := range [][2]string{{"FLOTILLA_FEEDBACK_HOLD", "abc"}, {"FLOTILLA_DDI_RATE", "fast"}, {"FLOTILLA_PRESIGN_DOWNLOADS", "yes"}} {
		err := run(ctx, []string{"server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, testEnv(kv[0]+"="+kv[1]), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), kv[0]) || cli.ExitCode(err) != 2 {
			t.Fatalf("%s=%s: %v", kv[0], kv[1], err)
		}
	}
	// Given on the command line, the flag wins and the variable is not read.
	err := run(context.Background(), []string{"server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--feedback-hold", "2s", "--memory-limit", "lots"},
		testEnv("FLOTILLA_FEEDBACK_HOLD=abc"), io.Discard, io.Discard)
	if err == nil || strings.Contains(err.Error(), "FLOTILLA_FEEDBACK_HOLD") {
		t.Fatalf("with --feedback-hold given: %v", err)
	}
}
