package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
	"github.com/flotilla-ota/flotilla/push"
)

// serverProc is a `flotilla server` process.
type serverProc struct {
	cmd *exec.Cmd
	URL string
	log *strings.Builder
}

var listenLineRE = regexp.MustCompile(`listening on\s+(https?://\S+)`)

func startServerProc(t *testing.T, dataDir string, args ...string) *serverProc {
	t.Helper()
	return startServerProcEnv(t, dataDir, nil, args...)
}

// startServerProcEnv is startServerProc with extra environment.
// testSecretKey is the secret key of the test clusters (32 bytes, base64).
const testSecretKey = "ZmxvdGlsbGEtdGVzdC1zZWNyZXQta2V5LTMyYnl0ZXM="

func startServerProcEnv(t *testing.T, dataDir string, env []string, args ...string) *serverProc {
	t.Helper()
	cmd := exec.Command(flotillaBinary(t), append([]string{"server", "--listen", "127.0.0.1:0", "--data-dir", dataDir}, args...)...)
	// Replicas of one cluster share the key that seals secrets.
	cmd.Env = append(append(os.Environ(), "FLOTILLA_ADMIN_TOKEN="+adminSecret, "FLOTILLA_SECRET_KEY="+testSecretKey, "FLOTILLA_DATABASE_URL="), env...)
	out, _ := cmd.StdoutPipe()
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProc{cmd: cmd, log: &log}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := listenLineRE.FindStringSubmatch(sc.Text()); m != nil {
			p.URL = m[1]
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if p.URL == "" {
		cmd.Process.Kill()
		t.Fatalf("server did not start: %s", log.String())
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return p
}

// TestPushSurvivesServerKill: the server is SIGKILLed in the middle of a
// push rollout and restarted; every node ends on the new version having
// accepted exactly one update id.
func TestPushSurvivesServerKill(t *testing.T) {
	dir := t.TempDir()
	srv := startServerProc(t, dir, "--push-workers", "6", "--push-lease", "2s", "--scheduler-lease", "2s")
	api := &servertest.API{T: t, Base: srv.URL, Token: adminSecret}
	payload := randomBytes(48<<10, 9)
	api.Must(201, "PUT", "/api/v1/artifacts/node-fw/2.0.0", payload, nil)
	var nodes []*push.Node
	for i := 0; i < 24; i++ {
		n, err := push.NewNode(push.NodeConfig{StateDir: t.TempDir(), Version: "1.0.0", Logger: slog.New(slog.DiscardHandler), MaxRate: 48 << 10,
			Installer: push.InstallerFunc(func(context.Context, push.Artifact, string) error { return nil })})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(n)
		t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
		nodes = append(nodes, n)
		api.Must(201, "POST", "/api/v1/devices", map[string]any{"id": fmt.Sprintf("n%02d", i), "labels": map[string]string{"kind": "node"}, "address": hs.URL}, nil)
	}
	var ro struct{ ID, Status string }
	api.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "push", "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"},
		"selector": "kind=node", "waves": 2, "delivery": "push", "start": true}, &ro)

	// Kill the server once some nodes are done and others are mid-transfer.
	servertest.Eventually(t, 60*time.Second, func() error {
		done, receiving := 0, 0
		for _, n := range nodes {
			switch n.Status().State {
			case push.StateComplete:
				done++
			case push.StateReceiving:
				receiving++
			}
		}
		if done == 0 || receiving == 0 {
			return fmt.Errorf("%d done, %d receiving", done, receiving)
		}
		return nil
	})
	srv.cmd.Process.Signal(syscall.SIGKILL)
	srv.cmd.Wait()

	srv2 := startServerProc(t, dir, "--push-workers", "6", "--push-lease", "2s", "--scheduler-lease", "2s")
	api.Base = srv2.URL
	servertest.Eventually(t, 120*time.Second, func() error {
		api.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	for i, n := range nodes {
		if st := n.Status(); st.Version != "2.0.0" || len(n.Accepted()) != 1 {
			t.Fatalf("node %d: %s, accepted %v (%s)", i, st.Version, n.Accepted(), st.Error)
		}
		// The kill may cost a delivery an intermediate history line (steps
		// are written together with the next), never its final state.
		var list struct {
			Items []struct {
				State   string
				History []struct{ State string }
			}
		}
		api.Must(200, "GET", fmt.Sprintf("/api/v1/devices/n%02d/deployments", i), nil, &list)
		if len(list.Items) != 1 || list.Items[0].State != "succeeded" {
			t.Fatalf("node %d: deployments %+v", i, list.Items)
		}
		finals := 0
		for _, h := range list.Items[0].History {
			if h.State == "succeeded" {
				finals++
			}
		}
		if h := list.Items[0].History; finals != 1 || h[len(h)-1].State != "succeeded" {
			t.Fatalf("node %d: history %+v, want one final entry, last", i, h)
		}
	}
}

// TestAgentAsPushNode: `flotilla agent --listen` is a push node that
// installs with the same file installer and health check as in pull mode,
// and accepts only the token the server issued for it.
func TestAgentAsPushNode(t *testing.T) {
	s := servertest.Start(t)
	payload := append([]byte("healthy build\n"), randomBytes(100_000, 11)...)
	s.API.Upload("fw", "2.0.0", payload, "")
	dir := t.TempDir()
	target := dir + "/app.bin"
	os.WriteFile(target, []byte("healthy old build\n"), 0o755)
	// The node binds this port later, and again after its restart.
	addr := testtool.ListenAddr(t)
	// Registering the node with its address gives the token the server
	// will send it, shown once; the node is started with it.
	var reg struct {
		NodeToken string `json:"node_token"`
	}
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "edge-1", "address": "http://" + addr}, &reg)
	if !strings.HasPrefix(reg.NodeToken, "fnt_") {
		t.Fatalf("registration returned node token %q", reg.NodeToken)
	}
	cmd := exec.Command(flotillaBinary(t), "agent", "--listen", addr, "--listen-token", reg.NodeToken, "--device-id", "edge-1",
		"--target", target, "--state-dir", dir+"/state", "--current-version", "1.0.0",
		"--health-command", "grep -q healthy "+target, "--health-grace", "1s", "--health-interval", "100ms")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	node := &push.Client{Base: "http://" + addr, Token: reg.NodeToken}
	servertest.Eventually(t, 10*time.Second, func() error { _, err := node.Info(context.Background()); return err })
	// Another server that registers the same address gets a token of its
	// own, which this node refuses: the API says so, in a category.
	s2 := servertest.Start(t)
	s2.API.Upload("fw", "2.0.0", payload, "")
	s2.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "edge-1", "address": "http://" + addr}, nil)
	code, body := s2.API.Do("POST", "/api/v1/devices/edge-1/updates", map[string]any{"id": "1a2b3c4d-0000-4000-8000-000000000001", "artifact": map[string]string{"name": "fw", "version": "2.0.0"}})
	if code != 502 || !strings.Contains(string(body), "refused by node (401)") {
		t.Fatalf("update with another server's node token = %d %s", code, body)
	}
	// The server that issued the node's token gets the update installed
	// and checked.
	uid := "1a2b3c4d-0000-4000-8000-000000000002"
	s.API.Must(202, "POST", "/api/v1/devices/edge-1/updates", map[string]any{"id": uid, "artifact": map[string]string{"name": "fw", "version": "2.0.0"}}, nil)
	servertest.Eventually(t, 30*time.Second, func() error {
		var up struct{ State, Message string }
		s.API.Must(200, "GET", "/api/v1/devices/edge-1/updates/"+uid, nil, &up)
		if up.State != "succeeded" {
			return fmt.Errorf("update %s (%s)", up.State, up.Message)
		}
		return nil
	})
	if b, _ := os.ReadFile(target); string(b) != string(payload) {
		t.Fatalf("target holds %d bytes, want the new build\n%s", len(b), log.String())
	}
	if info, _ := node.Info(context.Background()); info.Version != "2.0.0" {
		t.Fatalf("node reports version %q", info.Version)
	}
}
