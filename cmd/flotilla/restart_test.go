package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// switchProxy stands where devices reach the server, forwards to whichever
// server runs now (502 while none does), and records when each device last
// got an answer.
type switchProxy struct {
	srv     *httptest.Server
	backend atomic.Pointer[httputil.ReverseProxy]
	mu      sync.Mutex
	ok      map[string][]time.Time // device → times of 200 polls
}

func newSwitchProxy(t *testing.T) *switchProxy {
	p := &switchProxy{ok: map[string][]time.Time{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp := p.backend.Load()
		if rp == nil {
			http.Error(w, "no server", http.StatusBadGateway)
			return
		}
		rec := &statusWriter{ResponseWriter: w}
		rp.ServeHTTP(rec, r)
		// A poll is GET /default/controller/v1/ID.
		if parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/"); r.Method == "GET" && len(parts) == 4 && parts[1] == "controller" && rec.status == 200 {
			p.mu.Lock()
			p.ok[parts[3]] = append(p.ok[parts[3]], time.Now())
			p.mu.Unlock()
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = 200
	}
	return s.ResponseWriter.Write(b)
}

func (p *switchProxy) point(to string) {
	if to == "" {
		p.backend.Store(nil)
		return
	}
	u, _ := url.Parse(to)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
	p.backend.Store(rp)
}

// noopInstaller installs nothing: these devices only poll.
type noopInstaller struct{ updater.DefaultFetcher }

func (noopInstaller) Apply(context.Context, *updater.Update, *updater.Payload) error { return nil }

// firstOKAfter returns when each device first polled successfully after t.
func (p *switchProxy) firstOKAfter(t time.Time) map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]time.Time{}
	for id, times := range p.ok {
		for _, at := range times {
			if at.After(t) {
				out[id] = at
				break
			}
		}
	}
	return out
}

// TestFleetReturnsQuicklyAfterAServerRestart: devices whose poll failed
// retry with a short back-off up to the server's last interval — not the
// 45-90 minute fallback — so after a restart 100 SDK devices and three
// agents all poll again within twice the poll interval.
func TestFleetReturnsQuicklyAfterAServerRestart(t *testing.T) {
	const poll = 2 * time.Second
	dir := t.TempDir()
	s1, err := servertest.New(dir, servertest.WithPollInterval(poll))
	if err != nil {
		t.Fatal(err)
	}
	api := &servertest.API{T: t, Base: s1.URL, Token: servertest.AdminToken}
	proxy := newSwitchProxy(t)
	proxy.point(s1.URL)

	var ids []string
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("sdk-%03d", i)
		tok := api.CreateDevice(id, nil)
		c, err := updater.New(updater.Config{Server: proxy.srv.URL, ControllerID: id, Token: tok, CurrentVersion: "1.0.0",
			Handler: noopInstaller{}, StateDir: filepath.Join(dir, "sdk", id),
			FirstCheck: updater.Interval{Min: 0, Max: poll}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		c.Start(context.Background())
		t.Cleanup(c.Stop)
		ids = append(ids, id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("agent-%d", i)
		tok := api.CreateDevice(id, nil)
		cmd := exec.CommandContext(ctx, flotillaBinary(t), "agent", "--server", proxy.srv.URL, "--device-id", id, "--token", tok,
			"--first-check", "1s", "--target", filepath.Join(dir, id+".bin"), "--state-dir", filepath.Join(dir, id), "--current-version", "1.0.0")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); cmd.Wait() })
		ids = append(ids, id)
	}
	start := time.Now()
	servertest.Eventually(t, 20*time.Second, func() error {
		if n := len(proxy.firstOKAfter(start.Add(-time.Minute))); n < len(ids) {
			return fmt.Errorf("%d of %d devices polled", n, len(ids))
		}
		return nil
	})

	// The server goes away for a while; every device's polls fail.
	s1.Stop()
	proxy.point("")
	time.Sleep(3 * poll)

	s2, err := servertest.New(dir, servertest.WithPollInterval(poll))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	back := time.Now()
	proxy.point(s2.URL)
	time.Sleep(2*poll + 500*time.Millisecond)
	got := proxy.firstOKAfter(back)
	var late []string
	for _, id := range ids {
		at, ok := got[id]
		if !ok || at.Sub(back) > 2*poll {
			late = append(late, fmt.Sprintf("%s (%v)", id, at.Sub(back).Round(time.Millisecond)))
		}
	}
	if len(late) > 0 {
		t.Fatalf("%d of %d devices did not poll within %s of the restart: %v", len(late), len(ids), 2*poll, late)
	}
}
