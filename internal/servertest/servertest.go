// Package servertest starts a real Flotilla control plane on a random
// loopback port for tests in other packages, with a temp data directory
// and a known admin token, plus a small client for its API.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/updater"
)

// AdminToken is the admin secret of every test server.
const AdminToken = "flt_servertest_admin_token_0123456789abcdef"

// SecretKey seals every test server's secrets, so that test servers on one
// database agree (32 bytes, base64).
const SecretKey = "c2VydmVydGVzdC1zZWNyZXQta2V5LTMyLWJ5dGVzISE="

// Server is a running test server.
type Server struct {
	URL     string
	DataDir string
	Srv     *server.Server
	API     *API
	clock   *Clock
	stop    func()
}

// Clock is a settable time source for the server's policy decisions.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
	fixed  *time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fixed != nil {
		return *c.fixed
	}
	return time.Now().UTC().Add(c.offset).Truncate(time.Microsecond)
}

// Set freezes the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.fixed = &t
	c.mu.Unlock()
}

// Advance moves a frozen clock, or shifts a running one.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	if c.fixed != nil {
		t := c.fixed.Add(d)
		c.fixed = &t
	} else {
		c.offset += d
	}
	c.mu.Unlock()
}

// Option adjusts the server's configuration.
type Option func(*server.Config)

// WithDatabase uses a database URL instead of a fresh SQLite file.
func WithDatabase(url string) Option { return func(c *server.Config) { c.DatabaseURL = url } }

// WithPollInterval sets the DDI polling sleep.
func WithPollInterval(d time.Duration) Option { return func(c *server.Config) { c.PollInterval = d } }

// WithConfig edits the configuration freely.
func WithConfig(fn func(*server.Config)) Option { return Option(fn) }

// Start runs a server until the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dir := t.TempDir()
	s, err := New(dir, opts...)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	s.API = &API{T: t, Base: s.URL, Token: AdminToken}
	t.Cleanup(s.stop)
	return s
}

// New runs a server with its data in dir until Stop; for TestMain, where
// there is no testing.T.
func New(dir string, opts ...Option) (*Server, error) {
	cfg := server.Config{Listen: "127.0.0.1:0", DataDir: dir, AdminToken: AdminToken, SecretKey: SecretKey, PollInterval: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	var log *slog.Logger
	if os.Getenv("FLOTILLA_TEST_LOGS") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		return nil, err
	}
	clock := &Clock{}
	srv.Core.Now = clock.Now
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		cancel()
		srv.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	s := &Server{URL: "http://" + ln.Addr().String(), DataDir: dir, Srv: srv, clock: clock}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			srv.Close()
		})
	}
	return s, nil
}

// Clock returns the server's settable clock.
func (s *Server) Clock() *Clock { return s.clock }

// Stop shuts the server down before the test ends.
func (s *Server) Stop() { s.stop() }

// API is a small JSON client for the management API.
type API struct {
	T     testing.TB
	Base  string
	Token string
}

// As returns a client using another token.
func (a *API) As(token string) *API { c := *a; c.Token = token; return &c }

// Do sends a request; body may be nil, []byte, string, an io.Reader or a
// value to encode as JSON.
func (a *API) Do(method, path string, body any) (int, []byte) {
	a.T.Helper()
	var r io.Reader
	isJSON := false
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r, isJSON = strings.NewReader(b), true
	case io.Reader:
		r = b
	default:
		js, _ := json.Marshal(b)
		r, isJSON = bytes.NewReader(js), true
	}
	req, err := http.NewRequest(method, a.Base+path, r)
	if err != nil {
		a.T.Fatal(err)
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// Must does the request, fails the test unless the status is want, and
// decodes the answer into v when v is not nil.
func (a *API) Must(want int, method, path string, body, v any) []byte {
	a.T.Helper()
	code, out := a.Do(method, path, body)
	if code != want {
		a.T.Fatalf("%s %s = %d, want %d: %s", method, path, code, want, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			a.T.Fatalf("%s %s: decode %s: %v", method, path, out, err)
		}
	}
	return out
}

// ErrorCode returns the code of an error envelope, failing if the body is
// not one.
func ErrorCode(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not an error envelope: %s", body)
	}
	return e.Error.Code
}

// Artifact is the subset of artifact metadata tests use.
type Artifact struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Filename string `json:"filename"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	SHA1     string `json:"sha1"`
	MD5      string `json:"md5"`
}

// Upload stores an artifact.
func (a *API) Upload(name, version string, data []byte, query string) Artifact {
	a.T.Helper()
	var art Artifact
	path := "/api/v1/artifacts/" + name + "/" + version
	if query != "" {
		path += "?" + query
	}
	a.Must(201, "PUT", path, data, &art)
	return art
}

// CreateDevice pre-registers a device and returns its DDI token.
func (a *API) CreateDevice(id string, labels map[string]string) string {
	a.T.Helper()
	var d struct{ Token string }
	a.Must(201, "POST", "/api/v1/devices", map[string]any{"id": id, "labels": labels}, &d)
	return d.Token
}

// GatewayToken creates a token with the gateway scope.
func (a *API) GatewayToken() string {
	a.T.Helper()
	var tok struct{ Token string }
	a.Must(201, "POST", "/api/v1/tokens", map[string]any{"name": "gateway", "scopes": []string{"gateway"}}, &tok)
	return tok.Token
}

// Deployment is the subset of a deployment tests use.
type Deployment struct {
	ID       int64  `json:"id"`
	DeviceID string `json:"device_id"`
	State    string `json:"state"`
	Message  string `json:"message"`
	Healthy  *bool  `json:"healthy"`
	Progress struct {
		Cnt int `json:"cnt"`
		Of  int `json:"of"`
	} `json:"progress"`
	RolloutID string `json:"rollout_id"`
	History   []struct {
		State     string   `json:"state"`
		Execution string   `json:"execution"`
		Finished  string   `json:"finished"`
		Details   []string `json:"details"`
		Source    string   `json:"source"`
	} `json:"history"`
}

// Assign assigns an artifact directly to a device.
func (a *API) Assign(device, name, version string, extra map[string]any) Deployment {
	a.T.Helper()
	body := map[string]any{"artifact": map[string]string{"name": name, "version": version}}
	for k, v := range extra {
		body[k] = v
	}
	var d Deployment
	a.Must(201, "POST", "/api/v1/devices/"+device+"/deployments", body, &d)
	return d
}

// Deployment reads a deployment.
func (a *API) Deployment(device string, id int64) Deployment {
	a.T.Helper()
	var d Deployment
	a.Must(200, "GET", fmt.Sprintf("/api/v1/devices/%s/deployments/%d", device, id), nil, &d)
	return d
}

// WaitDeployment polls until the deployment reaches one of the states.
func (a *API) WaitDeployment(device string, id int64, timeout time.Duration, states ...string) Deployment {
	a.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := a.Deployment(device, id)
		for _, s := range states {
			if d.State == s {
				return d
			}
		}
		if time.Now().After(deadline) {
			a.T.Fatalf("deployment %d of %s is %s after %v, want %v (history %+v)", id, device, d.State, timeout, states, d.History)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually retries fn until it returns nil or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		err = errors.New("timed out")
	}
	t.Fatalf("condition not met within %v: %v", timeout, err)
}

// Metric returns the value of a Prometheus sample line prefix, e.g.
// `flotilla_ddi_downloads_total{kind="range"}`; 0 when absent.
func (s *Server) Metric(t testing.TB, sample string) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, sample+" ") {
			var v float64
			fmt.Sscanf(strings.TrimPrefix(line, sample+" "), "%g", &v)
			return v
		}
	}
	return 0
}

// StartDevice runs an in-process device on the updater SDK until the test
// ends. Fields left zero get what the tests want: this server's URL, a
// temporary state directory, a silent logger, a first check within 50 ms
// and a 100 ms poll while an update is active.
func (s *Server) StartDevice(t testing.TB, cfg updater.Config) *updater.Client {
	t.Helper()
	if cfg.Server == "" {
		cfg.Server = s.URL
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(t.TempDir(), cfg.ControllerID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FirstCheck == (updater.Interval{}) {
		cfg.FirstCheck = updater.Interval{Min: time.Millisecond, Max: 50 * time.Millisecond}
	}
	if cfg.ActiveInterval == 0 {
		cfg.ActiveInterval = 100 * time.Millisecond
	}
	c, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	t.Cleanup(c.Stop)
	return c
}
