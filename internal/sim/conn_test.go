package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connServer counts the connections it accepted and the requests it read.
type connServer struct {
	*httptest.Server
	conns, requests atomic.Int64
	mu              sync.Mutex
	bodies          []string
}

func newConnServer(t *testing.T, h http.HandlerFunc) *connServer {
	s := &connServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.mu.Unlock()
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// newHoldingServer answers "ok", except on path, whose answers wait until
// release is closed.
func newHoldingServer(t *testing.T, path string, release chan struct{}) *connServer {
	return newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			<-release
		}
		w.Write([]byte("ok"))
	})
}

func get(t *testing.T, c doer, ctx context.Context, url string, body string) (int, string, error) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestConnClientKeepsOneConnection: a device's requests go over one
// connection, answers of every framing read to their end.
func TestConnClientKeepsOneConnection(t *testing.T) {
	s := newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one,"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 1<<20))
		case "/none":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Write([]byte("ok " + r.URL.Path))
		}
	})
	c := mustConnClient(t, s.URL, http.DefaultClient)
	for i, tc := range []struct{ path, body, want string }{
		{"/a", "", "ok /a"}, {"/chunked", "", "part one,part two"}, {"/none", "", ""},
		{"/b", `{"x":1}`, "ok /b"}, {"/big", "", strings.Repeat("x", 1<<20)}, {"/c", "", "ok /c"},
	} {
		_, got, err := get(t, c, context.Background(), s.URL+tc.path, tc.body)
		if err != nil || got != tc.want {
			t.Fatalf("request %d (%s): %.40q, %v; want %.40q", i, tc.path, got, err, tc.want)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("%d connections for one device's requests, want 1", n)
	}
	if s.bodies[3] != `{"x":1}` {
		t.Fatalf("server read body %q", s.bodies[3])
	}
}

// TestConnClientSharesConnections: devices of a group take turns on the
// group's idle connections and open more only for requests in flight at
// the same time.
func TestConnClientSharesConnections(t *testing.T) {
	release := make(chan struct{})
	s := newHoldingServer(t, "/wait", release)
	c := mustConnClient(t, s.URL, http.DefaultClient)
	for range 5 { // five devices one after the other
		if _, _, err := get(t, c, context.Background(), s.URL+"/a", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("%d connections for requests one after the other, want 1", n)
	}
	var wg sync.WaitGroup
	for range 3 { // three devices at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := get(t, c, context.Background(), s.URL+"/wait", ""); err != nil {
				t.Error(err)
			}
		}()
	}
	for s.requests.Load() < 8 {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := s.conns.Load(); n != 3 {
		t.Fatalf("%d connections for three requests at once, want 3", n)
	}
	if len(c.idle) != 3 {
		t.Fatalf("%d idle connections after the requests, want 3", len(c.idle))
	}
}

// TestConnClientBoundsConnections: with a budget of two, five devices
// asking at once hold two connections and the other three wait for one;
// all five are answered, and a failed request gives its slot back.
func TestConnClientBoundsConnections(t *testing.T) {
	release := make(chan struct{})
	s := newHoldingServer(t, "/wait", release)
	c := mustConnClient(t, s.URL, http.DefaultClient)
	c.slots = make(chan struct{}, 2)
	var wg sync.WaitGroup
	var answered atomic.Int64
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, got, err := get(t, c, context.Background(), s.URL+"/wait", ""); err != nil || got != "ok" {
				t.Errorf("%q, %v", got, err)
				return
			}
			answered.Add(1)
		}()
	}
	for s.requests.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the other three must still be waiting
	if n := s.requests.Load(); n != 2 {
		t.Fatalf("%d requests reached the server with a budget of two connections", n)
	}
	close(release)
	wg.Wait()
	if n := answered.Load(); n != 5 {
		t.Fatalf("%d of 5 devices answered", n)
	}
	if n := s.conns.Load(); n != 2 {
		t.Fatalf("%d connections with a budget of two", n)
	}
	// A request that fails (nobody listens) must not keep its slot.
	dead := mustConnClient(t, "http://"+s.Listener.Addr().String(), http.DefaultClient)
	dead.slots = make(chan struct{}, 1)
	s.Close()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := get(t, dead, ctx, "http://"+s.Listener.Addr().String()+"/a", "")
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("request %d to a closed server: %v, want a connection error (a slot kept would wait instead)", i, err)
		}
	}
}

// TestConnClientRetriesClosedIdleConnection: the server closing an idle
// connection costs the device nothing — the request is sent once, on a new
// connection — while a connection the server closes after its answer
// (Connection: close) is not reused.
func TestConnClientRetriesClosedIdleConnection(t *testing.T) {
	s := newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/last" {
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte("ok"))
	})
	c := mustConnClient(t, s.URL, http.DefaultClient)
	if _, _, err := get(t, c, context.Background(), s.URL+"/a", "first"); err != nil {
		t.Fatal(err)
	}
	s.CloseClientConnections() // as the server's idle timeout would
	time.Sleep(50 * time.Millisecond)
	if code, _, err := get(t, c, context.Background(), s.URL+"/b", "second"); err != nil || code != 200 {
		t.Fatalf("request after the server closed the idle connection: %d, %v", code, err)
	}
	if _, _, err := get(t, c, context.Background(), s.URL+"/last", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, c, context.Background(), s.URL+"/d", ""); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.bodies, ","); got != "first,second,," {
		t.Fatalf("server read bodies %q: each request once, in order", got)
	}
	if n := s.conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (first, after the idle close, after Connection: close)", n)
	}
}

// TestConnClientStopsWithContext: a device told to stop does not wait out
// an answer that does not come.
func TestConnClientStopsWithContext(t *testing.T) {
	release := make(chan struct{})
	s := newHoldingServer(t, "/hang", release)
	defer close(release)
	c := mustConnClient(t, s.URL, http.DefaultClient)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, _, err := get(t, c, ctx, s.URL+"/hang", ""); done <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a canceled request succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a canceled request still waits for its answer")
	}
	if code, _, err := get(t, c, context.Background(), s.URL+"/after", ""); err != nil || code != 200 {
		t.Fatalf("next request: %d, %v", code, err)
	}
}

// TestConnClientSendsOtherHostsElsewhere: a download link to another host
// (a CDN, a presigned S3 URL) does not go over the server's connection.
func TestConnClientSendsOtherHostsElsewhere(t *testing.T) {
	server := newConnServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("server")) })
	cdn := newConnServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("cdn")) })
	c := mustConnClient(t, server.URL, cdn.Client())
	if _, got, err := get(t, c, context.Background(), cdn.URL+"/file", ""); err != nil || got != "cdn" {
		t.Fatalf("other host: %q, %v", got, err)
	}
	if server.requests.Load() != 0 {
		t.Fatal("a request for another host reached the server")
	}
}

// mustConnClient is newConnClient for a server URL the test made.
func mustConnClient(t *testing.T, server string, other doer) *connClient {
	t.Helper()
	c, err := newConnClient(server, other)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
