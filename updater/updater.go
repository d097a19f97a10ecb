// Package updater is Flotilla's device SDK: it keeps a device up to date
// with a Flotilla (or any hawkBit DDI) server, so that device software needs
// only the server's address, its current version and a function that
// applies an update.
//
// The client polls on jittered timers, downloads artifacts with resume and
// checksum verification (or pulls OCI images by digest), reports every step
// and every error to the server as DDI feedback, honours maintenance
// windows ("update: skip") and cancel requests, and keeps a small journal so
// that a crash at any point is recovered from on the next start.
//
// A minimal device:
//
//	type installer struct{ updater.DefaultFetcher }
//
//	func (installer) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
//		return os.Rename(p.Path, "/opt/app/app.bin")
//	}
//
//	c, _ := updater.New(updater.Config{
//		Server: "https://ota.example.com", ControllerID: "kiosk-17",
//		Token: os.Getenv("DEVICE_TOKEN"), CurrentVersion: "1.4.0",
//		Handler: installer{},
//	})
//	c.Start(ctx)
//	defer c.Stop()
//
// The package depends only on the DDI wire types in package ddi and on
// go-containerregistry for OCI images.
package updater

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/tuf"
)

// Interval is a range a timer is drawn from uniformly, so that a fleet does
// not poll in lockstep.
type Interval struct {
	Min, Max time.Duration
}

func (i Interval) draw() time.Duration {
	if i.Max <= i.Min {
		return i.Min
	}
	return i.Min + rand.N(i.Max-i.Min)
}

// Config configures a Client. Server, ControllerID and Handler are required.
type Config struct {
	// Server is the base URL, e.g. https://ota.example.com.
	Server string
	// Tenant defaults to "default".
	Tenant string
	// ControllerID identifies the device.
	ControllerID string
	// Token is the device's own DDI token (TargetToken).
	Token string
	// GatewayToken authenticates with a tenant-wide token instead; the
	// device registers itself on its first poll.
	GatewayToken string
	// CurrentVersion is the version running now; reported as the "version"
	// attribute and updated after each successful install.
	CurrentVersion string
	// Channel, if set, is reported as the label "channel", which is how a
	// device joins a release channel.
	Channel string
	// Attributes and Labels are reported to the server when it asks.
	Attributes map[string]string
	Labels     map[string]string
	// Handler fetches and applies updates.
	Handler Handler
	// HTTPClient defaults to a client with sensible timeouts. Whatever the
	// client, credentials go only to the origin (scheme, host, port) of
	// Server: links elsewhere — presigned object-storage URLs, redirects —
	// get no Authorization header.
	HTTPClient *http.Client
	// TLS configures the default client's TLS: a client certificate for
	// mutual TLS (the server's --client-ca), or a private CA for the
	// server's certificate. See LoadTLS. Ignored with HTTPClient.
	TLS *tls.Config
	// StateDir holds partial downloads and the journal; it must survive a
	// restart for downloads to resume. Default: a directory under
	// os.TempDir() named after the device.
	StateDir string
	// FirstCheck is when the first poll happens after Start (default 5-15
	// minutes).
	FirstCheck Interval
	// FallbackInterval is how long to wait between polls while the server
	// has never given a polling interval (default 45-90 minutes). Once it
	// has, a failed poll is retried sooner: from RetryMin, doubling with
	// jitter, up to the last interval the server gave — so a restarted or
	// failed-over server has its fleet back within one interval.
	FallbackInterval Interval
	// RetryMin is the first wait after a failed poll (default 2s).
	RetryMin time.Duration
	// ActiveInterval bounds the polling interval while an update runs, so
	// cancel requests and window changes are noticed (default 10s).
	ActiveInterval time.Duration
	// ProgressInterval throttles progress feedback (default 2s).
	ProgressInterval time.Duration
	// MaxDownloadRate limits downloads to this many bytes per second, for
	// metered or shared links; 0 means unlimited.
	MaxDownloadRate int64
	// TrustedRoot, if set, is the tenant's pinned TUF root.json (what
	// `flotilla trust init` wrote). Every update is then checked against
	// the tenant's signed metadata before anything is downloaded or
	// installed (package tuf): one that is not signed, whose bytes differ
	// from the signed ones, that is older than what runs without a signed
	// allow_downgrade, or whose metadata is expired or rolled back, is
	// refused and reported as failed with the reason. The trusted
	// metadata is kept under StateDir/tuf.
	TrustedRoot []byte
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Client keeps one device up to date.
type Client struct {
	cfg    Config
	http   *http.Client
	origin *url.URL // the server's; the only one credentials go to
	log    *slog.Logger
	auth   string

	mu        sync.Mutex
	version   string
	job       *job
	lastSleep time.Duration
	// serverSleep is the last polling interval the server gave; it
	// survives failed polls. failures counts polls failed in a row.
	serverSleep time.Duration
	failures    int
	journal     journal
	trust       *tuf.Verifier // nil: updates are not checked against signatures
	checkMu     sync.Mutex    // one check at a time
	running     bool
	stop        context.CancelFunc
	stopped     chan struct{}
	wake        chan struct{}
	unreported  []pendingReport
}

// ErrNoAction is returned by SendEvent when no update is in progress and no
// action id was given.
var ErrNoAction = errors.New("updater: no update in progress")

// New validates cfg and returns a Client. It reads the journal of a
// previous run, so that interrupted work resumes on the first check.
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" || cfg.ControllerID == "" {
		return nil, errors.New("updater: Config.Server and Config.ControllerID are required")
	}
	if cfg.Handler == nil {
		return nil, errors.New("updater: Config.Handler is required")
	}
	cfg.Server = strings.TrimRight(cfg.Server, "/")
	if cfg.Tenant == "" {
		cfg.Tenant = "default"
	}
	if cfg.FirstCheck == (Interval{}) {
		cfg.FirstCheck = Interval{5 * time.Minute, 15 * time.Minute}
	}
	if cfg.FallbackInterval == (Interval{}) {
		cfg.FallbackInterval = Interval{45 * time.Minute, 90 * time.Minute}
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 2 * time.Second
	}
	if cfg.ActiveInterval <= 0 {
		cfg.ActiveInterval = 10 * time.Second
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 2 * time.Second
	}
	if cfg.HTTPClient == nil {
		var rt http.RoundTripper = http.DefaultTransport
		if cfg.TLS != nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = cfg.TLS
			rt = t
		}
		cfg.HTTPClient = &http.Client{Timeout: 0, Transport: rt}
	}
	origin, err := url.Parse(cfg.Server)
	if err != nil || (origin.Scheme != "http" && origin.Scheme != "https") || origin.Host == "" {
		return nil, fmt.Errorf("updater: Config.Server %q is not an http(s) URL", cfg.Server)
	}
	// A copy of the client whose redirects never carry credentials to
	// another origin (the standard library keeps them for another port
	// of the same host).
	hc := *cfg.HTTPClient
	next := hc.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !sameOrigin(req.URL, origin) {
			req.Header.Del("Authorization")
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	cfg.HTTPClient = &hc
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(os.TempDir(), "flotilla-updater-"+sanitize(cfg.ControllerID))
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("updater: state dir: %w", err)
	}
	c := &Client{cfg: cfg, http: cfg.HTTPClient, origin: origin, version: cfg.CurrentVersion, wake: make(chan struct{}, 1),
		log: cfg.Logger.With("device", cfg.ControllerID)}
	switch {
	case cfg.Token != "":
		c.auth = "TargetToken " + cfg.Token
	case cfg.GatewayToken != "":
		c.auth = "GatewayToken " + cfg.GatewayToken
	}
	if len(cfg.TrustedRoot) > 0 {
		v, err := tuf.New(tuf.Config{Root: cfg.TrustedRoot, MetadataURL: cfg.Server + "/" + cfg.Tenant + "/tuf/",
			Dir: filepath.Join(cfg.StateDir, "tuf"), Client: c.http, Authorize: c.authorize})
		if err != nil {
			return nil, fmt.Errorf("updater: Config.TrustedRoot: %w", err)
		}
		c.trust = v
	}
	if err := c.journal.load(cfg.StateDir); err != nil {
		return nil, err
	}
	if c.journal.Version != "" && c.journal.Phase == phaseDone && c.journal.Result == resultSuccess {
		c.version = c.journal.Version
	}
	return c, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r == 0 {
			return '_'
		}
		return r
	}, s)
}

// Version is the version the device runs, as far as the client knows.
func (c *Client) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Start polls in the background until Stop or until ctx ends. The first
// check happens after Config.FirstCheck.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return errors.New("updater: already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	c.running, c.stop, c.stopped = true, cancel, make(chan struct{})
	go c.loop(ctx)
	return nil
}

// Stop ends polling and waits for a running update to stop at a safe point:
// a download is interrupted (it resumes on the next start); an install is
// left to finish.
func (c *Client) Stop() {
	c.mu.Lock()
	if !c.running {
		c.mu.Unlock()
		return
	}
	stop, stopped := c.stop, c.stopped
	c.running = false
	c.mu.Unlock()
	stop()
	<-stopped
}

func (c *Client) loop(ctx context.Context) {
	defer close(c.stopped)
	wait := c.cfg.FirstCheck.draw()
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			c.waitJob()
			return
		case <-t.C:
		case <-c.wake:
			t.Stop()
		}
		if err := c.check(ctx, false); err != nil && ctx.Err() == nil {
			c.log.Warn("update check failed", "err", err)
		}
		wait = c.nextWait()
	}
}

// nextWait is the server's sleep, shortened while an update runs; after
// failed polls, a jittered exponential back-off up to that sleep.
func (c *Client) nextWait() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures > 0 {
		return retryWait(c.failures, c.cfg.RetryMin, c.serverSleep, c.cfg.FallbackInterval)
	}
	wait := c.lastSleep
	if wait <= 0 {
		wait = c.cfg.FallbackInterval.draw()
	}
	if c.job != nil && wait > c.cfg.ActiveInterval {
		wait = c.cfg.ActiveInterval
	}
	return wait
}

// retryWait is the wait before retry number n (1 after the first failure):
// min·2^(n-1), at most ceiling (the server's last interval), drawn from
// the upper half of that so that a fleet does not come back in step; the
// fallback interval when the server never gave one.
func retryWait(n int, minWait, ceiling time.Duration, fallback Interval) time.Duration {
	if ceiling <= 0 {
		return fallback.draw()
	}
	d := minWait
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// CheckNow polls once and acts on the answer. If that starts (or
// continues) an update, CheckNow returns when the update has finished or
// is waiting for its maintenance window.
func (c *Client) CheckNow(ctx context.Context) error {
	return c.check(ctx, true)
}

// Wake makes a started client poll now instead of at its next timer.
func (c *Client) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// waitJob interrupts a download (or a wait for the window) and waits for
// the job to end; an install runs to completion.
func (c *Client) waitJob() {
	c.mu.Lock()
	j := c.job
	c.mu.Unlock()
	if j != nil {
		j.interrupt()
		<-j.done
	}
}

// sameOrigin reports whether u has o's scheme, host and port.
func sameOrigin(u, o *url.URL) bool {
	return strings.EqualFold(u.Scheme, o.Scheme) && strings.EqualFold(u.Hostname(), o.Hostname()) && effectivePort(u) == effectivePort(o)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// authorize sets the device's credentials on req when it goes to the
// server's own origin, and never elsewhere.
func (c *Client) authorize(req *http.Request) {
	if c.auth != "" && sameOrigin(req.URL, c.origin) {
		req.Header.Set("Authorization", c.auth)
	}
}

// LoadTLS builds a TLS configuration from PEM files: certFile and keyFile
// (both or neither) are the device's client certificate for mutual TLS;
// caFile, if set, is the CA the server's certificate must chain to instead
// of the system's.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("updater: a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("updater: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("updater: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("updater: CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
