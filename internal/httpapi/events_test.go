package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

type nopInstaller struct{ updater.DefaultFetcher }

func (nopInstaller) Apply(context.Context, *updater.Update, *updater.Payload) error { return nil }

func startDevices(t *testing.T, s *servertest.Server, n int) {
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("dev-%02d", i)
		tok := s.API.CreateDevice(id, map[string]string{"fleet": "f"})
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0", Handler: nopInstaller{},
			FirstCheck: updater.Interval{Min: time.Millisecond, Max: 100 * time.Millisecond}})
	}
}

var order = map[string]int{}

func init() {
	for i, s := range flotilla.AllDeploymentStates {
		order[string(s)] = i
	}
}

func TestWebSocketThroughARollout(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	s.API.Upload("fw", "2.0.0", []byte("v2"), "")
	startDevices(t, s, 40)
	var ro struct{ ID string }
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "ws", "artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"selector": "fleet=f", "waves": 2}, &ro)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/api/v1/events?rollout=" + ro.ID + "&token=" + servertest.AdminToken
	c, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// A stalled client: subscribed to everything, never reads.
	stalled, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/api/v1/events", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + servertest.AdminToken}}})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()

	_, first, err := c.Read(ctx)
	if err != nil || !strings.Contains(string(first), `"type":"snapshot"`) {
		t.Fatalf("first message = %s, %v", first, err)
	}
	s.API.Must(200, "POST", "/api/v1/rollouts/"+ro.ID+"/start", nil, nil)

	seq := map[string][]string{}
	var lastSeq float64
	sawProgress, sawNode := false, false
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v (states so far %v)", err, seq)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		if sq, _ := m["seq"].(float64); sq <= lastSeq {
			t.Fatalf("sequence went from %v to %v", lastSeq, sq)
		} else {
			lastSeq = sq
		}
		switch m["type"] {
		case "deployment":
			dev := m["deviceId"].(string)
			seq[dev] = append(seq[dev], m["state"].(string))
		case "rollout_progress":
			for _, k := range []string{"type", "rolloutId", "nodeIp", "status", "current", "total", "progress", "timestamp", "deviceId"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("rollout_progress lacks %q: %s", k, b)
				}
			}
			sawProgress = true
		case "node_status_update":
			for _, k := range []string{"type", "nodeIp", "status", "timestamp"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("node_status_update lacks %q: %s", k, b)
				}
			}
			if st := m["status"]; st != "updating" && st != "online" {
				t.Fatalf("node_status_update status %v", st)
			}
			sawNode = true
		case "rollout":
			if m["status"] == "completed" {
				goto done
			}
		}
	}
done:
	if !sawProgress || !sawNode {
		t.Fatalf("progress %v node %v", sawProgress, sawNode)
	}
	if len(seq) != 40 {
		t.Fatalf("heard of %d devices, want 40", len(seq))
	}
	for dev, states := range seq {
		if states[len(states)-1] != "succeeded" {
			t.Fatalf("%s ended %v", dev, states)
		}
		if !slices.IsSortedFunc(states, func(a, b string) int { return order[a] - order[b] }) {
			t.Fatalf("%s states out of order: %v", dev, states)
		}
	}
	// The stalled client never read, and the rollout still completed.
	if n := s.Srv.Hub.Subscribers(); n < 2 {
		t.Fatalf("%d subscribers; the stalled one should still be attached or dropped cleanly", n)
	}
}

func TestSSEResume(t *testing.T) {
	s := servertest.Start(t)
	open := func(lastID string) (*bufio.Reader, func()) {
		req, _ := http.NewRequest("GET", s.URL+"/api/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("SSE = %v %v", resp, err)
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}
	readEvent := func(r *bufio.Reader) (id, typ, data string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "event: "):
				typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && typ != "":
				return
			}
		}
	}
	r, closeFn := open("")
	if _, typ, _ := readEvent(r); typ != "snapshot" {
		t.Fatalf("first SSE event %s", typ)
	}
	s.API.CreateDevice("a", nil)
	id, typ, data := readEvent(r)
	if typ != "device_registered" || !strings.Contains(data, `"deviceId":"a"`) {
		t.Fatalf("event %s %s", typ, data)
	}
	closeFn()
	// Events published while disconnected are replayed after Last-Event-ID,
	// without a snapshot.
	s.API.CreateDevice("b", nil)
	s.API.CreateDevice("c", nil)
	r, closeFn = open(id)
	defer closeFn()
	var got []string
	for len(got) < 2 {
		_, typ, data := readEvent(r)
		if typ == "snapshot" {
			t.Fatal("resumed stream began with a snapshot")
		}
		got = append(got, data)
	}
	if !strings.Contains(got[0], `"deviceId":"b"`) || !strings.Contains(got[1], `"deviceId":"c"`) {
		t.Fatalf("replayed %v", got)
	}
	// A sequence the server does not know gets a snapshot marked resync.
	r2, close2 := open("999999")
	defer close2()
	if _, typ, data := readEvent(r2); typ != "snapshot" || !strings.Contains(data, `"resync":true`) {
		t.Fatalf("unknown Last-Event-ID: %s %s", typ, data)
	}
}

// TestShutdownEndsEventStreams: a server stopping tells its watchers why
// and does not wait for them to hang up (the shutdown timeout here is far
// longer than the test's own).
func TestShutdownEndsEventStreams(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.ShutdownTimeout = time.Hour }))
	req, _ := http.NewRequest("GET", s.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("SSE = %v %v", resp, err)
	}
	defer resp.Body.Close()
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(s.URL, "http")+"/api/v1/events?token="+servertest.AdminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	r := bufio.NewReader(resp.Body)
	var last string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "data: ") {
			last = line
		}
	}
	if !strings.Contains(last, `"type":"close"`) || !strings.Contains(last, "shutting down") {
		t.Fatalf("the SSE stream ended without saying why; last data: %q", last)
	}
	for {
		if _, _, err = ws.Read(context.Background()); err != nil {
			break
		}
	}
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("WebSocket closed with %v, want going away", err)
	}
	<-stopped
}
