package pushd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/push"
)

// testNode is an in-process push node: the same code `flotilla agent
// --listen` runs.
type testNode struct {
	*push.Node
	srv       *httptest.Server
	mu        sync.Mutex
	installed []byte
}

func startNode(t *testing.T, rate int64) *testNode {
	t.Helper()
	tn := &testNode{}
	n, err := push.NewNode(push.NodeConfig{StateDir: t.TempDir(), Version: "1.0.0", Logger: slog.New(slog.DiscardHandler), MaxRate: rate,
		Installer: push.InstallerFunc(func(_ context.Context, a push.Artifact, p string) error {
			tn.mu.Lock()
			defer tn.mu.Unlock()
			tn.installed = append(tn.installed, 1)
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	tn.Node = n
	tn.srv = httptest.NewServer(n)
	t.Cleanup(func() {
		// A slow node would otherwise drain what is buffered in its socket.
		tn.srv.CloseClientConnections()
		tn.srv.Close()
	})
	return tn
}

func firmware(n int) []byte { return bytes.Repeat([]byte("push firmware 2.0.0\n"), n/20+1)[:n] }

func TestPushRolloutToManyNodes(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond; c.PushWorkers = 16 }))
	s.API.Upload("node-fw", "2.0.0", firmware(64<<10), "")
	nodes := map[string]*testNode{}
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("node-%03d", i)
		nodes[id] = startNode(t, 0)
		s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": id, "labels": map[string]string{"kind": "node"}, "address": nodes[id].srv.URL}, nil)
	}
	var ro struct{ ID, Status string }
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "push", "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"},
		"selector": "kind=node", "waves": 3, "delivery": "push", "start": true}, &ro)
	servertest.Eventually(t, 120*time.Second, func() error {
		s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	for id, n := range nodes {
		st := n.Status()
		if st.Version != "2.0.0" || len(n.Accepted()) != 1 {
			t.Fatalf("%s: version %s, accepted %v", id, st.Version, n.Accepted())
		}
	}
	var dev struct{ Version string }
	s.API.Must(200, "GET", "/api/v1/devices/node-000", nil, &dev)
	if dev.Version != "2.0.0" {
		t.Fatalf("device version %q", dev.Version)
	}
	// Steps a node passed through faster than they were written are in the
	// history all the same, in order.
	var list struct {
		Items []struct {
			State   string
			History []struct{ State string }
		}
	}
	s.API.Must(200, "GET", "/api/v1/devices/node-000/deployments", nil, &list)
	deps := list.Items
	if len(deps) != 1 || deps[0].State != "succeeded" {
		t.Fatalf("deployments %+v", deps)
	}
	var states []string
	for _, h := range deps[0].History {
		if len(states) == 0 || states[len(states)-1] != h.State {
			states = append(states, h.State)
		}
	}
	states = slices.DeleteFunc(states, func(s string) bool { return s == "installing" }) // seen only if asked while applying
	if want := []string{"scheduled", "pending", "downloading", "downloaded", "succeeded"}; !slices.Equal(states, want) {
		t.Fatalf("history %v, want %v (installing optional)", states, want)
	}
}

func TestCallerDisconnectsAtOnce(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("node-fw", "2.0.0", firmware(256<<10), "")
	n := startNode(t, 512<<10) // half a second of transfer
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "n1", "address": n.srv.URL}, nil)
	uid := "0b1c2d4e-0000-4000-8000-000000000001"
	body := fmt.Sprintf(`{"id":%q,"artifact":{"name":"node-fw","version":"2.0.0"}}`, uid)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/devices/n1/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		servertest.AdminToken, len(body), body)
	conn.Close() // gone before any answer
	var up struct {
		State string
		Node  *push.Status
	}
	servertest.Eventually(t, 30*time.Second, func() error {
		code, b := s.API.Do("GET", "/api/v1/devices/n1/updates/"+uid, nil)
		if code != 200 {
			return fmt.Errorf("status %d %s", code, b)
		}
		s.API.Must(200, "GET", "/api/v1/devices/n1/updates/"+uid, nil, &up)
		if up.State != "succeeded" {
			return fmt.Errorf("update %s", up.State)
		}
		return nil
	})
	if up.Node == nil || up.Node.ID != uid || up.Node.State != push.StateComplete || n.Status().Version != "2.0.0" {
		t.Fatalf("node status %+v", up.Node)
	}
	// Starting it again is idempotent: nothing is sent twice.
	s.API.Must(202, "POST", "/api/v1/devices/n1/updates", map[string]any{"id": uid, "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"}}, nil)
	if len(n.Accepted()) != 1 {
		t.Fatalf("accepted %v", n.Accepted())
	}
}

func TestAbortOnlyWithTheRightID(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("node-fw", "2.0.0", firmware(1<<20), "")
	n := startNode(t, 64<<10) // 16 seconds of transfer
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "n1", "address": n.srv.URL}, nil)
	uid := "0b1c2d4e-0000-4000-8000-000000000002"
	var up struct{ State string }
	s.API.Must(202, "POST", "/api/v1/devices/n1/updates", map[string]any{"id": uid, "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"}}, &up)
	servertest.Eventually(t, 10*time.Second, func() error {
		if st := n.Status(); st.BytesReceived == 0 {
			return fmt.Errorf("no bytes yet")
		}
		return nil
	})
	wrong := "0b1c2d4e-0000-4000-8000-0000000000ff"
	code, b := s.API.Do("POST", "/api/v1/devices/n1/updates/"+wrong+"/abort", nil)
	if code != 409 || !strings.Contains(string(b), uid) {
		t.Fatalf("abort with a wrong id = %d %s", code, b)
	}
	if st := n.Status(); st.State != push.StateReceiving {
		t.Fatalf("node after a wrong abort: %s", st.State)
	}
	s.API.Must(200, "POST", "/api/v1/devices/n1/updates/"+uid+"/abort", nil, &up)
	st := n.Status()
	if st.State != push.StateAborted || st.Version != "1.0.0" || up.State != "canceled" {
		t.Fatalf("after abort: node %+v, deployment %s", st, up.State)
	}
	// The pool stops delivering; the node stays aborted on its old version.
	time.Sleep(1500 * time.Millisecond)
	if st := n.Status(); st.State != push.StateAborted || st.Version != "1.0.0" {
		t.Fatalf("node later: %+v", st)
	}
}

func TestSlowNodeDoesNotHoldBackOthers(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond; c.PushWorkers = 4 }))
	s.API.Upload("node-fw", "2.0.0", firmware(200<<10), "")
	slow := startNode(t, 2<<10) // 100 seconds for 200 KiB
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "a-slow", "labels": map[string]string{"kind": "node"}, "address": slow.srv.URL}, nil)
	fast := map[string]*testNode{}
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("fast-%02d", i)
		fast[id] = startNode(t, 0)
		s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": id, "labels": map[string]string{"kind": "node"}, "address": fast[id].srv.URL}, nil)
	}
	var ro struct{ ID string }
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "push", "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"},
		"selector": "kind=node", "delivery": "push", "start": true}, &ro)
	servertest.Eventually(t, 60*time.Second, func() error {
		for id, n := range fast {
			if n.Status().Version != "2.0.0" {
				return fmt.Errorf("%s not updated yet", id)
			}
		}
		return nil
	})
	if st := slow.Status(); st.State != push.StateReceiving {
		t.Fatalf("the slow node is %s; it should still be receiving", st.State)
	}
}

func TestSporeFacade(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond; c.SporeOpen = true }))
	open := &servertest.API{T: t, Base: s.URL} // no token: tools written for the gateway
	for i := 0; i < 3; i++ {
		n := startNode(t, 0)
		addr := strings.Replace(n.srv.URL, "127.0.0.1", fmt.Sprintf("127.0.0.%d", i+2), 1)
		// httptest listens on 127.0.0.1 only; route 127.0.0.x to it.
		l, _ := net.Listen("tcp", strings.TrimPrefix(addr, "http://"))
		if l != nil {
			go http.Serve(l, n)
			t.Cleanup(func() { l.Close() })
		} else {
			addr = n.srv.URL
		}
		s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": fmt.Sprintf("spore-%d", i), "labels": map[string]string{"app": "base"}, "address": addr}, nil)
	}
	// Registry upload: multipart metadata + firmware.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("metadata", `{"name":"my-firmware","version":"1.0.0","labels":{"app":"base"}}`)
	fw, _ := mw.CreateFormFile("firmware", "my-firmware.bin")
	fw.Write(firmware(10000))
	mw.Close()
	req, _ := http.NewRequest("POST", s.URL+"/api/registry/firmware", &mp)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("registry upload = %v %v", resp.Status, err)
	}
	resp.Body.Close()
	var health struct{ Status string }
	open.Must(200, "GET", "/api/registry/health", nil, &health)
	var list []struct{ Name, Version string }
	open.Must(200, "GET", "/api/registry/firmware", nil, &list)
	if health.Status != "healthy" || len(list) != 1 || list[0].Name != "my-firmware" {
		t.Fatalf("health %v, list %v", health, list)
	}
	got := open.Must(200, "GET", "/api/registry/firmware/my-firmware/1.0.0", nil, nil)
	sum := sha256.Sum256(got)
	want := sha256.Sum256(firmware(10000))
	if hex.EncodeToString(sum[:]) != hex.EncodeToString(want[:]) {
		t.Fatal("downloaded firmware differs")
	}
	open.Must(200, "PUT", "/api/registry/firmware/my-firmware/1.0.0", map[string]any{"labels": map[string]string{"app": "base", "stage": "beta"}}, nil)

	var versions struct {
		Members []struct {
			IP      string            `json:"ip"`
			Version string            `json:"version"`
			Labels  map[string]string `json:"labels"`
		} `json:"members"`
	}
	open.Must(200, "GET", "/api/cluster/node/versions", nil, &versions)
	if len(versions.Members) != 3 || versions.Members[0].Labels["app"] != "base" {
		t.Fatalf("node versions %+v", versions)
	}
	var nodes []map[string]any
	for _, m := range versions.Members {
		nodes = append(nodes, map[string]any{"ip": m.IP, "version": m.Version, "labels": m.Labels})
	}
	var started struct {
		Success     bool   `json:"success"`
		Message     string `json:"message"`
		RolloutID   string `json:"rolloutId"`
		TotalNodes  int    `json:"totalNodes"`
		FirmwareURL string `json:"firmwareUrl"`
	}
	open.Must(200, "POST", "/api/rollout", map[string]any{"firmware": map[string]any{"name": "my-firmware", "version": "1.0.0", "labels": map[string]string{"app": "base"}}, "nodes": nodes}, &started)
	if !started.Success || started.TotalNodes != 3 || started.Message != "Rollout started for 3 nodes" || !strings.HasSuffix(started.FirmwareURL, "/api/registry/firmware/my-firmware/1.0.0") {
		t.Fatalf("rollout answer %+v", started)
	}
	servertest.Eventually(t, 30*time.Second, func() error {
		var ro struct{ Status string }
		s.API.Must(200, "GET", "/api/v1/rollouts/"+started.RolloutID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	// The seed's error codes: unknown firmware 404, invalid request 400.
	if code, _ := open.Do("POST", "/api/rollout", map[string]any{"firmware": map[string]string{"name": "nope", "version": "9"}, "nodes": nodes}); code != 404 {
		t.Fatalf("unknown firmware = %d", code)
	}
	if code, _ := open.Do("POST", "/api/rollout", `{"firmware":{}}`); code != 400 {
		t.Fatalf("invalid rollout = %d", code)
	}
}

// A delivery offers a fresh update id at once, without asking the node
// first; a node busy with another update refuses it, and the delivery then
// waits its turn instead of failing.
func TestFreshDeliveryWaitsForABusyNode(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	s.API.Upload("node-fw", "2.0.0", firmware(4<<10), "")
	n := startNode(t, 0)
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "busy-1", "labels": map[string]string{"kind": "busy"}, "address": n.srv.URL}, nil)
	// Someone else's update, accepted and waiting for its bytes.
	other := firmware(1 << 10)
	sum := sha256.Sum256(other)
	foreign := "0b1c2d4e-0000-4000-8000-0000000000ff"
	c := &push.Client{Base: n.srv.URL}
	ctx := context.Background()
	if _, err := c.Start(ctx, push.StartRequest{ID: foreign, Artifact: push.Artifact{Name: "other", Version: "9.9.9", Size: int64(len(other)), SHA256: hex.EncodeToString(sum[:])}}); err != nil {
		t.Fatal(err)
	}
	var ro struct {
		ID, Status string
		Counts     map[string]int
	}
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "busy", "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"},
		"selector": "kind=busy", "delivery": "push", "start": true}, &ro)
	// The rollout's offer was refused while the node is busy.
	servertest.Eventually(t, 30*time.Second, func() error {
		if s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro); ro.Status != "running" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	if got := n.Accepted(); len(got) != 1 || got[0] != foreign {
		t.Fatalf("the busy node accepted %v, want only %s", got, foreign)
	}
	if _, err := c.SendPayload(ctx, foreign, bytes.NewReader(other), 0, int64(len(other))); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 60*time.Second, func() error {
		s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" || ro.Counts["succeeded"] != 1 {
			return fmt.Errorf("rollout %s %v", ro.Status, ro.Counts)
		}
		return nil
	})
	if got := n.Accepted(); len(got) != 2 || got[0] != foreign || n.Status().Version != "2.0.0" {
		t.Fatalf("node accepted %v, runs %s", got, n.Status().Version)
	}
}

// A transfer that outlasts the socket buffers is recorded as it goes: the
// pool writes the bytes sent every second from a second in (a payload sent
// within the first second costs no progress write).
func TestLongTransferRecordsProgress(t *testing.T) {
	s := servertest.Start(t)
	const size = 24 << 20
	s.API.Upload("node-fw", "2.0.0", firmware(size), "")
	n := startNode(t, 2<<20) // 12 seconds of transfer
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "n1", "address": n.srv.URL}, nil)
	s.API.Must(202, "POST", "/api/v1/devices/n1/updates", map[string]any{"id": "0b1c2d4e-0000-4000-8000-000000000002",
		"artifact": map[string]string{"name": "node-fw", "version": "2.0.0"}}, nil)
	var seen []int
	servertest.Eventually(t, 30*time.Second, func() error {
		var list struct {
			Items []struct {
				State    string
				Progress struct{ Cnt, Of int }
			}
		}
		s.API.Must(200, "GET", "/api/v1/devices/n1/deployments", nil, &list)
		if len(list.Items) != 1 || list.Items[0].State != "downloading" || list.Items[0].Progress.Of != size {
			return fmt.Errorf("deployments %+v", list.Items)
		}
		if c := list.Items[0].Progress.Cnt; c > 0 && (len(seen) == 0 || c > seen[len(seen)-1]) {
			seen = append(seen, c)
		}
		if len(seen) < 2 {
			return fmt.Errorf("progress seen so far: %v", seen)
		}
		return nil
	})
}

// holdStart passes requests to node, except that the first start's answer
// (the node takes the update) is held until until() says so, for at most 20
// seconds. Status questions wait until that start reached the node, so the
// held start is the API caller's: a worker that claimed the update finds
// the node has it, and does not start it itself.
func holdStart(node http.Handler, until func() bool) http.Handler {
	var once sync.Once
	started := make(chan struct{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held := false
		if r.Method == "POST" && r.URL.Path == push.PathUpdate {
			once.Do(func() { held = true })
		}
		if r.Method == "GET" && r.URL.Path == push.PathStatus {
			select {
			case <-started:
			case <-time.After(20 * time.Second):
			}
		}
		if !held {
			node.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		node.ServeHTTP(rec, r)
		close(started)
		for deadline := time.Now().Add(20 * time.Second); !until() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

// deploymentState is the state of the device's one deployment ("" if it
// has none or several).
func deploymentState(s *servertest.Server, device string) string {
	var list struct{ Items []struct{ State string } }
	s.API.Must(200, "GET", "/api/v1/devices/"+device+"/deployments", nil, &list)
	if len(list.Items) != 1 {
		return ""
	}
	return list.Items[0].State
}

// TestStartAnsweredAfterTheDeliveryEnded: the update is recorded before
// the node is asked to start it, so a worker may claim it and deliver it to
// its end before the node's answer to the start arrives. The caller still
// gets its 202 with the update as it stands, not a 410 for a deployment
// that "takes no more feedback".
func TestStartAnsweredAfterTheDeliveryEnded(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("node-fw", "2.0.0", firmware(4<<10), "")
	n := startNode(t, 0)
	ended := func() bool { return deploymentState(s, "n1") == "succeeded" }
	// The node takes the update; its answer is held until a worker has
	// delivered the update to its end.
	n.srv.Config.Handler = holdStart(n.Node, ended)
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "n1", "address": n.srv.URL}, nil)
	var got struct{ State string }
	s.API.Must(202, "POST", "/api/v1/devices/n1/updates", map[string]any{"id": "0b1c2d4e-0000-4000-8000-000000000003",
		"artifact": map[string]string{"name": "node-fw", "version": "2.0.0"}}, &got)
	if !ended() {
		t.Fatal("no worker delivered the update while the node's answer to the start was held; the test shows nothing")
	}
	if got.State != "succeeded" {
		t.Fatalf("the start answered with state %q, want the update as it stands (succeeded)", got.State)
	}
}

// TestLateAcceptanceDoesNotStepBack: when the node's answer to the start
// comes after a worker took the update as far as installing, the start's
// acceptance is not written over it (it would move it back to downloading).
func TestLateAcceptanceDoesNotStepBack(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("node-fw", "2.0.0", firmware(4<<10), "")
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	node, err := push.NewNode(push.NodeConfig{StateDir: t.TempDir(), Version: "1.0.0", Logger: slog.New(slog.DiscardHandler),
		Installer: push.InstallerFunc(func(ctx context.Context, _ push.Artifact, _ string) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	state := func() string { return deploymentState(s, "n1") }
	srv := httptest.NewServer(holdStart(node, func() bool { return state() == "installing" }))
	t.Cleanup(srv.Close)
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "n1", "address": srv.URL}, nil)
	var got struct{ State string }
	s.API.Must(202, "POST", "/api/v1/devices/n1/updates", map[string]any{"id": "0b1c2d4e-0000-4000-8000-000000000004",
		"artifact": map[string]string{"name": "node-fw", "version": "2.0.0"}}, &got)
	if got.State != "installing" || state() != "installing" {
		t.Fatalf("after the late answer to the start: answered %q, stored %q; want both installing", got.State, state())
	}
	releaseOnce.Do(func() { close(release) })
	servertest.Eventually(t, 30*time.Second, func() error {
		if st := state(); st != "succeeded" {
			return fmt.Errorf("deployment %s", st)
		}
		return nil
	})
}
