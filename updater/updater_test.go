package updater_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// fileInstaller writes the payload to target, remembering calls.
type fileInstaller struct {
	updater.DefaultFetcher
	target  string
	applied atomic.Int32
	gate    chan struct{} // if set, Apply waits on it
	started chan struct{} // if set, closed when Apply begins
}

func (f *fileInstaller) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	if f.started != nil {
		close(f.started)
	}
	if f.gate != nil {
		<-f.gate
	}
	f.applied.Add(1)
	b, err := os.ReadFile(p.Path)
	if err != nil {
		return err
	}
	return os.WriteFile(f.target, b, 0o644)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newClient(t *testing.T, s *servertest.Server, id, token string, h updater.Handler, mod ...func(*updater.Config)) *updater.Client {
	t.Helper()
	cfg := updater.Config{Server: s.URL, ControllerID: id, Token: token, CurrentVersion: "1.0.0", Handler: h,
		StateDir: t.TempDir(), Logger: quiet(), FirstCheck: updater.Interval{Min: time.Millisecond, Max: 2 * time.Millisecond},
		ActiveInterval: 50 * time.Millisecond, ProgressInterval: time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// appServer starts a server with app 2.0.0 (n bytes, app.bin) and device
// d1, and returns a file installer for it.
func appServer(t *testing.T, n int) (s *servertest.Server, data []byte, token string, h *fileInstaller) {
	t.Helper()
	s = servertest.Start(t)
	data = payload(n)
	s.API.Upload("app", "2.0.0", data, "filename=app.bin")
	return s, data, s.API.CreateDevice("d1", nil), &fileInstaller{target: filepath.Join(t.TempDir(), "app.bin")}
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestUpdateEndToEnd(t *testing.T) {
	s, data, tok, h := appServer(t, 300_000)
	c := newClient(t, s, "d1", tok, h)
	ctx := context.Background()

	// Nothing assigned: a check reports the version and does nothing else.
	if err := c.CheckNow(ctx); err != nil {
		t.Fatal(err)
	}
	var dev struct{ Version string }
	s.API.Must(200, "GET", "/api/v1/devices/d1", nil, &dev)
	if dev.Version != "1.0.0" {
		t.Fatalf("reported version = %q", dev.Version)
	}

	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	if err := c.CheckNow(ctx); err != nil {
		t.Fatal(err)
	}
	got := s.API.Deployment("d1", dep.ID)
	if got.State != "succeeded" {
		t.Fatalf("deployment = %s, history %+v", got.State, got.History)
	}
	b, _ := os.ReadFile(h.target)
	if !bytes.Equal(b, data) || c.Version() != "2.0.0" {
		t.Fatalf("installed %d bytes, version %s", len(b), c.Version())
	}
	var execs []string
	for _, ev := range got.History {
		if ev.Source == "device" {
			execs = append(execs, ev.Execution)
		}
	}
	joined := strings.Join(execs, ",")
	if !strings.HasPrefix(joined, "download,") || !strings.Contains(joined, "downloaded,proceeding") || !strings.HasSuffix(joined, "closed") {
		t.Fatalf("device feedback sequence = %s", joined)
	}
	// The next check uploads the new version.
	c.CheckNow(ctx)
	s.API.Must(200, "GET", "/api/v1/devices/d1", nil, &dev)
	if dev.Version != "2.0.0" {
		t.Fatalf("version after update = %q", dev.Version)
	}
}

func TestGatewayTokenSelfRegistration(t *testing.T) {
	s := servertest.Start(t)
	gw := s.API.GatewayToken()
	h := &fileInstaller{target: filepath.Join(t.TempDir(), "x")}
	c := newClient(t, s, "self-1", "", h, func(cfg *updater.Config) {
		cfg.GatewayToken = gw
		cfg.Channel = "beta"
		cfg.Labels = map[string]string{"region": "eu"}
		cfg.Attributes = map[string]string{"hw": "rev3"}
	})
	if err := c.CheckNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	var dev struct {
		Labels     map[string]string
		Attributes map[string]string
		Version    string
	}
	s.API.Must(200, "GET", "/api/v1/devices/self-1", nil, &dev)
	if dev.Labels["channel"] != "beta" || dev.Labels["region"] != "eu" || dev.Attributes["hw"] != "rev3" || dev.Version != "1.0.0" {
		t.Fatalf("self-registered device = %+v", dev)
	}
}

func TestTamperedBlobIsReportedAndNotInstalled(t *testing.T) {
	s := servertest.Start(t)
	art := s.API.Upload("app", "2.0.0", payload(50_000), "")
	// Corrupt the stored bytes behind the server's back.
	path := filepath.Join(s.DataDir, "blobs", "objects", art.SHA256[:2], art.SHA256)
	b, _ := os.ReadFile(path)
	b[100] ^= 0xff
	os.WriteFile(path, b, 0o644)

	tok := s.API.CreateDevice("d1", nil)
	h := &fileInstaller{target: filepath.Join(t.TempDir(), "app.bin")}
	c := newClient(t, s, "d1", tok, h)
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c.CheckNow(context.Background())
	got := s.API.Deployment("d1", dep.ID)
	if got.State != "failed" || !strings.Contains(got.Message, "checksum mismatch") || h.applied.Load() != 0 || c.Version() != "1.0.0" {
		t.Fatalf("tampered download: state %s, message %q, applied %d", got.State, got.Message, h.applied.Load())
	}
}

// slowTransport delivers download bodies slowly until released.
type slowTransport struct {
	release chan struct{}
	started chan struct{}
	once    sync.Once
}

func (s *slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && strings.Contains(r.URL.Path, "/softwaremodules/") {
		s.once.Do(func() { close(s.started) })
		resp.Body = &slowBody{ReadCloser: resp.Body, t: s, ctx: r.Context()}
	}
	return resp, err
}

type slowBody struct {
	io.ReadCloser
	t   *slowTransport
	ctx context.Context
}

func (b *slowBody) Read(p []byte) (int, error) {
	select {
	case <-b.t.release:
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	case <-time.After(20 * time.Millisecond):
		if len(p) > 1024 {
			p = p[:1024]
		}
	}
	return b.ReadCloser.Read(p)
}

func TestCancelWhileDownloading(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("app", "2.0.0", payload(2_000_000), "")
	tok := s.API.CreateDevice("d1", nil)
	h := &fileInstaller{target: filepath.Join(t.TempDir(), "app.bin")}
	tr := &slowTransport{release: make(chan struct{}), started: make(chan struct{})}
	c := newClient(t, s, "d1", tok, h, func(cfg *updater.Config) { cfg.HTTPClient = &http.Client{Transport: tr} })
	c.Start(context.Background())
	defer c.Stop()
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c.Wake()
	<-tr.started
	s.API.WaitDeployment("d1", dep.ID, 10*time.Second, "downloading")
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/d1/deployments/%d/cancel", dep.ID), nil, nil)
	got := s.API.WaitDeployment("d1", dep.ID, 10*time.Second, "canceled", "succeeded", "failed")
	if got.State != "canceled" || h.applied.Load() != 0 {
		t.Fatalf("cancel during download: %s, applied %d", got.State, h.applied.Load())
	}
}

func TestCancelAfterInstallStartedIsRejected(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("app", "2.0.0", payload(10_000), "")
	tok := s.API.CreateDevice("d1", nil)
	h := &fileInstaller{target: filepath.Join(t.TempDir(), "app.bin"), gate: make(chan struct{}), started: make(chan struct{})}
	c := newClient(t, s, "d1", tok, h)
	c.Start(context.Background())
	defer c.Stop()
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c.Wake()
	<-h.started
	s.API.WaitDeployment("d1", dep.ID, 10*time.Second, "installing")
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/d1/deployments/%d/cancel", dep.ID), nil, nil)
	// The device answers the cancel with a rejection and keeps going.
	servertest.Eventually(t, 10*time.Second, func() error {
		d := s.API.Deployment("d1", dep.ID)
		for _, ev := range d.History {
			if ev.Execution == "rejected" {
				return nil
			}
		}
		return fmt.Errorf("no rejection yet; state %s", d.State)
	})
	close(h.gate)
	got := s.API.WaitDeployment("d1", dep.ID, 10*time.Second, "succeeded", "canceled", "failed")
	if got.State != "succeeded" {
		t.Fatalf("state after rejected cancel = %s", got.State)
	}
}

// healthInstaller fails its health check and records the rollback.
type healthInstaller struct {
	fileInstaller
	rolledBack atomic.Bool
}

func (h *healthInstaller) CheckHealth(ctx context.Context, u *updater.Update) error {
	return errors.New("service did not come up")
}

func (h *healthInstaller) RollBack(ctx context.Context, u *updater.Update) error {
	h.rolledBack.Store(true)
	return nil
}

func TestUnhealthyUpdateRollsBack(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("app", "2.0.0", payload(1000), "")
	tok := s.API.CreateDevice("d1", nil)
	h := &healthInstaller{fileInstaller: fileInstaller{target: filepath.Join(t.TempDir(), "a")}}
	c := newClient(t, s, "d1", tok, h)
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c.CheckNow(context.Background())
	got := s.API.Deployment("d1", dep.ID)
	if got.State != "failed" || got.Healthy == nil || *got.Healthy || !h.rolledBack.Load() || c.Version() != "1.0.0" {
		t.Fatalf("unhealthy: state %s healthy %v rolled back %v version %s", got.State, got.Healthy, h.rolledBack.Load(), c.Version())
	}
}

type healthyInstaller struct{ fileInstaller }

func (h *healthyInstaller) CheckHealth(context.Context, *updater.Update) error { return nil }

func TestHealthyUpdateReportsHealth(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("app", "2.0.0", payload(1000), "")
	tok := s.API.CreateDevice("d1", nil)
	h := &healthyInstaller{fileInstaller{target: filepath.Join(t.TempDir(), "a")}}
	c := newClient(t, s, "d1", tok, h)
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c.CheckNow(context.Background())
	got := s.API.Deployment("d1", dep.ID)
	if got.State != "succeeded" || got.Healthy == nil || !*got.Healthy {
		t.Fatalf("healthy: state %s healthy %v", got.State, got.Healthy)
	}
}

func TestResumesPartialDownload(t *testing.T) {
	s, data, tok, h := appServer(t, 400_000)
	stateDir := t.TempDir()
	// First client is stopped mid-download.
	tr := &slowTransport{release: make(chan struct{}), started: make(chan struct{})}
	c1 := newClient(t, s, "d1", tok, h, func(cfg *updater.Config) {
		cfg.StateDir = stateDir
		cfg.HTTPClient = &http.Client{Transport: tr}
	})
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c1.Start(context.Background())
	c1.Wake()
	<-tr.started
	time.Sleep(300 * time.Millisecond)
	c1.Stop()
	parts, _ := filepath.Glob(filepath.Join(stateDir, "downloads", "*", "app.bin.part"))
	if len(parts) != 1 {
		t.Fatalf("no partial download left: %v", parts)
	}
	st, _ := os.Stat(parts[0])
	if st.Size() == 0 || st.Size() >= int64(len(data)) {
		t.Fatalf("partial download has %d bytes", st.Size())
	}
	// A new client with the same state dir resumes with a Range request.
	c2 := newClient(t, s, "d1", tok, h, func(cfg *updater.Config) { cfg.StateDir = stateDir })
	before := s.Metric(t, `flotilla_ddi_downloads_total{kind="range"}`)
	c2.CheckNow(context.Background())
	if got := s.API.Deployment("d1", dep.ID); got.State != "succeeded" {
		t.Fatalf("resumed deployment = %s (%s)", got.State, got.Message)
	}
	if s.Metric(t, `flotilla_ddi_downloads_total{kind="range"}`) != before+1 {
		t.Fatal("the server saw no Range request")
	}
	b, _ := os.ReadFile(h.target)
	if !bytes.Equal(b, data) {
		t.Fatal("resumed download differs")
	}
}

// breakOnce fails the first download request as a dropped connection.
type breakOnce struct{ broke atomic.Bool }

func (b *breakOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/artifacts/") && !b.broke.Swap(true) {
		return nil, errors.New("connection reset by peer")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestDownloadThatBrokeIsTriedAgain: a download cut off (a replica killed
// behind a load balancer) is tried again instead of failing the update.
func TestDownloadThatBrokeIsTriedAgain(t *testing.T) {
	s, data, tok, h := appServer(t, 100_000)
	tr := &breakOnce{}
	c := newClient(t, s, "d1", tok, h, func(cfg *updater.Config) { cfg.HTTPClient = &http.Client{Transport: tr} })
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c.CheckNow(context.Background())
	if got := s.API.Deployment("d1", dep.ID); got.State != "succeeded" || !tr.broke.Load() {
		t.Fatalf("deployment = %s (%s), download broken: %v", got.State, got.Message, tr.broke.Load())
	}
	if b, _ := os.ReadFile(h.target); !bytes.Equal(b, data) {
		t.Fatal("installed bytes differ")
	}
}

func TestMaintenanceWindowDefersInstall(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("app", "2.0.0", payload(1000), "")
	tok := s.API.CreateDevice("d1", nil)
	// Daily 02:00-03:00 UTC; the server's clock says 01:00.
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s.Clock().Set(day.Add(time.Hour))
	h := &fileInstaller{target: filepath.Join(t.TempDir(), "a")}
	c := newClient(t, s, "d1", tok, h)
	dep := s.API.Assign("d1", "app", "2.0.0", map[string]any{"maintenance_window": map[string]string{"schedule": "0 0 2 * * ?", "duration": "01:00:00", "timezone": "UTC"}})
	c.CheckNow(context.Background()) // downloads, then parks
	if got := s.API.Deployment("d1", dep.ID); got.State != "downloaded" || h.applied.Load() != 0 {
		t.Fatalf("outside the window: %s, applied %d", got.State, h.applied.Load())
	}
	s.Clock().Set(day.Add(2*time.Hour + time.Minute))
	c.CheckNow(context.Background())
	if got := s.API.Deployment("d1", dep.ID); got.State != "succeeded" || h.applied.Load() != 1 {
		t.Fatalf("inside the window: %s, applied %d", got.State, h.applied.Load())
	}
}

type recoveringInstaller struct {
	fileInstaller
	ok bool
}

func (r *recoveringInstaller) Recover(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	if r.ok {
		return nil
	}
	return errors.New("target does not hold the new version")
}

func TestInterruptedInstallReportsTheTruth(t *testing.T) {
	for _, ok := range []bool{true, false} {
		t.Run(fmt.Sprint("installed=", ok), func(t *testing.T) {
			s := servertest.Start(t)
			s.API.Upload("app", "2.0.0", payload(1000), "")
			tok := s.API.CreateDevice("d1", nil)
			dep := s.API.Assign("d1", "app", "2.0.0", nil)
			stateDir := t.TempDir()
			// A journal as a crash during Apply leaves it.
			j := fmt.Sprintf(`{"action_id":"%d","phase":"applying","version":"2.0.0","prev_version":"1.0.0"}`, dep.ID)
			os.WriteFile(filepath.Join(stateDir, "journal.json"), []byte(j), 0o600)
			h := &recoveringInstaller{fileInstaller: fileInstaller{target: filepath.Join(t.TempDir(), "a")}, ok: ok}
			c := newClient(t, s, "d1", tok, h, func(cfg *updater.Config) { cfg.StateDir = stateDir })
			c.CheckNow(context.Background())
			want := map[bool]string{true: "succeeded", false: "failed"}[ok]
			if got := s.API.Deployment("d1", dep.ID); got.State != want || h.applied.Load() != 0 {
				t.Fatalf("recovered deployment = %s (%s), applied %d", got.State, got.Message, h.applied.Load())
			}
		})
	}
}

type ociInstaller struct {
	updater.DefaultFetcher
	got   *updater.Payload
	index []byte
}

func (o *ociInstaller) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	o.got = p
	var err error
	o.index, err = os.ReadFile(filepath.Join(p.Path, "index.json"))
	return err
}

func TestOCIImageFetch(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(reg.URL, "http://")
	tag, _ := name.NewTag(host + "/kiosk/app:2.0.0")
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	ref := host + "/kiosk/app@" + digest.String()

	s := servertest.Start(t)
	s.API.Upload("app-image", "2.0.0", []byte(`{"image":"`+ref+`"}`), "type=oci-image")
	tok := s.API.CreateDevice("d1", nil)
	h := &ociInstaller{}
	c := newClient(t, s, "d1", tok, h)
	dep := s.API.Assign("d1", "app-image", "2.0.0", nil)
	c.CheckNow(context.Background())
	if got := s.API.Deployment("d1", dep.ID); got.State != "succeeded" {
		t.Fatalf("oci deployment = %s (%s)", got.State, got.Message)
	}
	if h.got == nil || h.got.Image != ref {
		t.Fatalf("payload = %+v", h.got)
	}
	if !strings.Contains(string(h.index), digest.String()) {
		t.Fatalf("OCI layout index = %s", h.index)
	}
	// A reference by tag is refused: only digests pin the bytes.
	if _, err := updater.ParseOCIReference([]byte(host + "/kiosk/app:2.0.0")); err == nil {
		t.Fatal("tag reference accepted")
	}
}

func TestSendEvent(t *testing.T) {
	s := servertest.Start(t)
	tok := s.API.CreateDevice("d1", nil)
	s.API.Upload("app", "2.0.0", payload(10), "")
	dep := s.API.Assign("d1", "app", "2.0.0", nil)
	c := newClient(t, s, "d1", tok, &fileInstaller{})
	if err := c.SendEvent(context.Background(), updater.Event{}); !errors.Is(err, updater.ErrNoAction) {
		t.Fatalf("SendEvent without action = %v", err)
	}
	err := c.SendEvent(context.Background(), updater.Event{ActionID: fmt.Sprint(dep.ID), Details: []string{"battery low, waiting"}})
	if err != nil {
		t.Fatal(err)
	}
	got := s.API.Deployment("d1", dep.ID)
	if got.Message != "battery low, waiting" {
		t.Fatalf("event not recorded: %+v", got)
	}
}
