package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/blob"
	"github.com/flotilla-ota/flotilla/internal/blob/disk"
	"github.com/flotilla-ota/flotilla/internal/blob/s3"
	"github.com/flotilla-ota/flotilla/internal/cluster"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/deviceapi"
	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/hawkbit"
	"github.com/flotilla-ota/flotilla/internal/httpapi"
	"github.com/flotilla-ota/flotilla/internal/postgres"
	"github.com/flotilla-ota/flotilla/internal/pushd"
	"github.com/flotilla-ota/flotilla/internal/ratelimit"
	"github.com/flotilla-ota/flotilla/internal/scheduler"
	"github.com/flotilla-ota/flotilla/internal/secret"
	"github.com/flotilla-ota/flotilla/internal/sqlite"
	"github.com/flotilla-ota/flotilla/internal/sqlstore"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
	"github.com/flotilla-ota/flotilla/internal/ui"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

// Server is an assembled control plane.
type Server struct {
	Config Config
	Core   *core.Core
	Store  *sqlstore.Store
	Blobs  blob.Store
	API    *httpapi.Server
	DDI    *deviceapi.Server
	// Repo is the tenants' TUF repositories (signed releases).
	Repo *tufrepo.Repo
	// Hawkbit is hawkBit's Management API under /rest/v1.
	Hawkbit *hawkbit.Server
	// DMF is hawkBit's Device Management Federation API: one link per
	// broker (virtual host).
	DMF     []*dmf.Link
	Sched   *scheduler.Scheduler
	Hub     *events.Hub
	Push    *pushd.Pool
	link    *cluster.Link
	Log     *slog.Logger
	metrics *metrics
	handler http.Handler
	tls     *tlsFiles
	// AdminToken is the bootstrap secret when it was generated at this
	// start, "" otherwise.
	AdminToken string
}

// OpenStore opens the database named by a database URL and migrates it.
// With PostgreSQL it also returns the bus replicas talk over.
func OpenStore(ctx context.Context, dbURL string, log *slog.Logger) (*sqlstore.Store, *postgres.Bus, error) {
	kind, loc, err := ParseDatabaseURL(dbURL)
	if err != nil {
		return nil, nil, err
	}
	if kind == DBPostgres {
		return postgres.OpenWithBus(ctx, loc, log)
	}
	st, err := sqlite.Open(ctx, loc)
	return st, nil, err
}

// OpenBlobs opens the blob store cfg names: S3 for an s3:// BlobURL, else
// the local directory.
func OpenBlobs(ctx context.Context, cfg Config) (blob.Store, error) {
	switch {
	case strings.HasPrefix(cfg.BlobURL, "s3://"):
		sc, err := s3.ParseURL(cfg.BlobURL)
		if err != nil {
			return nil, err
		}
		return s3.Open(ctx, sc)
	case cfg.BlobURL == "", strings.HasPrefix(cfg.BlobURL, "file://"):
		dir := cfg.BlobDir
		if cfg.BlobURL != "" {
			dir = strings.TrimPrefix(cfg.BlobURL, "file://")
		}
		return disk.Open(dir)
	}
	return nil, fmt.Errorf("blob URL %q: use s3://BUCKET?endpoint=HOST:PORT or file:///PATH", cfg.BlobURL)
}

// New opens everything cfg names and bootstraps the default tenant and admin
// token. Close releases it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, bus, err := OpenStore(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return nil, err
	}
	st.WriteWholeUpTo = cfg.RolloutWriteWholeUpTo
	blobs, err := OpenBlobs(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	box, err := openSecrets(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	m := newMetrics()
	st.Observe = m.observeStore
	hub := events.NewHub(events.HubConfig{})
	c := core.New(st, blobs, hub, log, core.Config{
		MaxArtifactSize: cfg.MaxArtifactSize, PollInterval: cfg.PollInterval, OfflineAfter: cfg.OfflineAfter, Secrets: box,
		HoldFeedback: max(cfg.FeedbackHold, 0),
		Quotas:       cfg.Quotas,
	})
	if err := c.CheckSecrets(ctx); err != nil {
		st.Close()
		return nil, err
	}
	secret, err := c.Bootstrap(ctx, cfg.AdminToken, filepath.Join(cfg.DataDir, "admin-token"))
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := c.BootstrapGateway(ctx, cfg.GatewayToken); err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{Config: cfg, Core: c, Store: st, Blobs: blobs, Log: log, metrics: m, AdminToken: secret}
	s.Repo = tufrepo.New(st, blobs, box, func() time.Time { return c.Now() }, tufrepo.Config{TimestampExpiry: cfg.TUFTimestampExpiry}, log)
	c.Signatures = s.Repo
	s.Hub = hub
	// With presigning on, DDI download links and push deliveries point
	// at object storage, so the bytes do not pass through the replicas.
	var presign func(ctx context.Context, a flotilla.Artifact) (string, error)
	if p, ok := blobs.(blob.Presigner); ok && cfg.PresignDownloads {
		ttl := cfg.PresignTTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		presign = func(ctx context.Context, a flotilla.Artifact) (string, error) {
			return p.PresignGet(ctx, a.SHA256, ttl, a.Filename)
		}
	}
	s.Push = pushd.New(c, st, pushd.Config{Owner: cfg.ReplicaID, Workers: cfg.PushWorkers, Lease: cfg.PushLease, Presign: presign})
	// Failed authentications are limited per client address across both
	// APIs: one budget for guessing any credential.
	authFailures := ratelimit.New(float64(cfg.AuthFailureRate), cfg.AuthFailureBurst)
	s.API = httpapi.NewServer(c, log, httpapi.Options{PublicURL: cfg.PublicURL, Events: hub, Push: s.Push, SporeOpen: cfg.SporeOpen, AuthFailures: authFailures,
		StreamsPerToken: cfg.EventStreamsPerToken, Streams: cfg.EventStreams})
	ddiOpts := deviceapi.Options{PublicURL: cfg.PublicURL, OnDownload: m.countDownload, Presign: presign, Repository: s.Repo,
		AuthFailures: authFailures, DeviceRate: ratelimit.New(float64(cfg.DDIRate), cfg.DDIBurst)}
	if bus != nil {
		ddiOpts.MaxCacheAge = 30 * time.Second
	}
	s.DDI = deviceapi.NewServer(c, log, ddiOpts)
	s.Hawkbit = hawkbit.NewServer(c, log, hawkbit.Options{PublicURL: cfg.PublicURL, AuthFailures: authFailures})
	s.Sched = scheduler.New(c, st, scheduler.Config{Owner: cfg.ReplicaID, Tick: cfg.SchedulerTick, Lease: cfg.SchedulerLease})
	if bus != nil {
		s.link = cluster.New(bus, s.Sched.Owner(), log, cluster.Handlers{
			Invalidate: s.DDI.InvalidateLocal, ForgetAuth: c.ForgetDeviceAuthLocal, Wake: s.Sched.Wake,
			Event: func(b []byte) {
				var e events.Event
				if json.Unmarshal(b, &e) == nil {
					hub.Inject(e)
				}
			},
		})
	}
	s.newDMF()
	s.wire()
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		st.Close()
		return nil, fmt.Errorf("give both --tls-cert and --tls-key")
	}
	if cfg.ClientCA != "" && cfg.TLSCert == "" {
		st.Close()
		return nil, fmt.Errorf("--client-ca needs --tls-cert and --tls-key: client certificates come with TLS")
	}
	if cfg.TLSCert != "" {
		if s.tls, err = newTLSFiles(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA, log); err != nil {
			st.Close()
			return nil, err
		}
	}
	trusted, err := ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		st.Close()
		return nil, err
	}
	h := s.routes()
	if s.tls != nil {
		h = s.tls.verifiedClient(h)
	}
	s.handler = trustProxies(trusted, h)
	return s, nil
}

// wire connects who reacts to what: the one place where the parts of a
// running server hear of each other's changes. Every hook only queues
// work; none blocks the request that caused it.
func (s *Server) wire() {
	link := s.link
	h := core.Hooks{
		Invalidate:         s.DDI.InvalidateLocal,
		AttributesAnswered: s.DDI.AttributesAnsweredLocal,
		ActionEnded:        s.DDI.ActionEndedLocal,
		ActionStarted:      s.DDI.ActionStartedLocal,
		WakeRollout:        func(id string) { s.Sched.Wake(id); s.wakeDMF() },
		ForgetAuth:         func() {},
		DeploymentChanged: func(d flotilla.Deployment) {
			s.Sched.DeploymentChanged(d)
			s.Push.DeploymentChanged(d)
			s.wakeDMF()
		},
	}
	if link != nil {
		h.Invalidate = func(tenant, device string) { s.DDI.InvalidateLocal(tenant, device); link.Invalidate(tenant, device) }
		h.AttributesAnswered = func(tenant, device string) {
			s.DDI.AttributesAnsweredLocal(tenant, device)
			link.Invalidate(tenant, device)
		}
		h.ActionEnded = func(d flotilla.Deployment) {
			s.DDI.ActionEndedLocal(d)
			link.Invalidate(d.Tenant, d.DeviceID)
		}
		h.ActionStarted = func(d flotilla.Deployment, began time.Time) {
			s.DDI.ActionStartedLocal(d, began)
			link.Invalidate(d.Tenant, d.DeviceID)
		}
		h.ForgetAuth = link.ForgetAuth
		h.DeploymentChanged = func(d flotilla.Deployment) {
			s.Sched.DeploymentChanged(d)
			s.Push.DeploymentChanged(d)
			s.wakeDMF()
			if d.RolloutID != "" && d.State.Terminal() {
				link.Wake(d.RolloutID)
			}
		}
		// Events reach the other replicas through the link. A deployment's
		// final state also goes with the commit that wrote it (NOTIFY in the
		// transaction), so a replica's death between commit and forward
		// loses nothing and nobody waits; the receiving hub drops the
		// second copy.
		s.Hub.Forward = func(e events.Event) {
			b, _ := json.Marshal(e)
			link.QueueEvent(b)
		}
		s.Store.NotifyFinal = func(d flotilla.Deployment) (string, string) {
			b, _ := json.Marshal(core.DeploymentEvent(d, d.UpdatedAt))
			return link.Notice(b)
		}
	}
	s.Core.SetHooks(h)
}

// openSecrets returns the box that seals credentials: the key from the
// configuration (FLOTILLA_SECRET_KEY), else the data directory's key file.
func openSecrets(cfg Config) (*secret.Box, error) {
	var key []byte
	var err error
	if cfg.SecretKey != "" {
		if key, err = secret.ParseKey(cfg.SecretKey); err != nil {
			return nil, fmt.Errorf("FLOTILLA_SECRET_KEY: %w", err)
		}
	} else if key, err = secret.LoadOrCreate(filepath.Join(cfg.DataDir, "secret.key")); err != nil {
		return nil, err
	}
	return secret.New(key)
}

// Handler is the whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		wire.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.Handle("GET /", ui.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.Error(w, r, s.Log, flotilla.Errorf(flotilla.ENotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	// The management API, the device API and the rest are separate muxes;
	// their path spaces overlap ("/api/controller/v1/x" is a tenant named
	// "api"), so dispatch by prefix here rather than in one mux.
	return guardBodies(s.Config.BodyReadTimeout, s.metrics.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/api/"):
			s.API.ServeHTTP(w, r)
		case strings.HasPrefix(p, hawkbit.Prefix+"/"):
			s.Hawkbit.ServeHTTP(w, r)
		case deviceapi.IsDDIPath(p):
			s.DDI.ServeHTTP(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	})))
}

// handleReady fails while the database or the blob store is unreachable, so
// a load balancer stops sending traffic to this replica.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{"store": "ok", "blobs": "ok"}
	status := http.StatusOK
	if err := s.Store.Ping(ctx); err != nil {
		checks["store"] = err.Error()
		status = http.StatusServiceUnavailable
	}
	if err := s.Blobs.Ping(ctx); err != nil {
		checks["blobs"] = err.Error()
		status = http.StatusServiceUnavailable
	}
	// A full disk takes the replica out of service until space returns;
	// the probe notices that without waiting for a client to try.
	for name, st := range map[string]fullness{"store": s.Store, "blobs": asFullness(s.Blobs)} {
		if st == nil || !st.Full() {
			continue
		}
		if err := st.Probe(ctx); err != nil || st.Full() {
			checks[name] = "disk full: writes are refused (507) until space is freed"
			status = http.StatusServiceUnavailable
		}
	}
	state := "ready"
	// A broker outage degrades DMF only: HTTP devices are still served,
	// so the replica stays in the load balancer.
	for _, l := range s.DMF {
		checks["dmf:"+l.Name()] = "ok"
		if err := l.Ready(); err != nil {
			checks["dmf:"+l.Name()] = err.Error()
			state = "degraded"
		}
	}
	if status != http.StatusOK {
		state = "unavailable"
	}
	wire.JSON(w, status, map[string]any{"status": state, "checks": checks})
}

// fullness is a store that notices a full disk.
type fullness interface {
	Full() bool
	Probe(ctx context.Context) error
}

func asFullness(b blob.Store) fullness {
	if f, ok := b.(fullness); ok {
		return f
	}
	return nil
}

// Close releases the store.
func (s *Server) Close() error { return s.Store.Close() }

// Serve serves on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	// Live event streams never end by themselves; shutting down ends them
	// (with a close event saying why) so that it need not wait them out.
	hs.RegisterOnShutdown(func() { s.Hub.CloseAll() })
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.Core.RunSeenFlusher(bg, 2*time.Second) }()
	go func() { defer wg.Done(); s.Core.RunHeldFlusher(bg) }()
	go func() { defer wg.Done(); s.resignTimestamps(bg) }()
	if s.link != nil {
		ready := make(chan struct{})
		wg.Add(1)
		go func() { defer wg.Done(); s.link.Run(bg, ready) }()
		select {
		case <-ready:
		case <-time.After(5 * time.Second):
			s.Log.Warn("cluster link not listening yet")
		}
	}
	s.runDMF(bg, ln.Addr(), func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() })
	if !s.Config.NoScheduler {
		wg.Add(2)
		go func() { defer wg.Done(); s.Sched.Run(bg) }()
		go func() { defer wg.Done(); s.Push.Run(bg) }()
	}
	defer func() { stopBackground(); wg.Wait() }()

	errc := make(chan error, 1)
	if s.tls != nil {
		hs.TLSConfig = s.tls.config()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				s.tls.Reload()
			}
		}()
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.Config.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		hs.Close()
		err = nil
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Listen listens on addr and, when the port is taken, says how to pick
// another.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s is already in use (another Flotilla?): choose another address with --listen, e.g. --listen 127.0.0.1:0 for any free port", addr)
	}
	return ln, err
}

// resignTimestamps keeps every signed tenant's TUF timestamp fresh. Each
// replica does it; the store lets one of them win each version.
func (s *Server) resignTimestamps(ctx context.Context) {
	every := min(time.Minute, s.Repo.TimestampExpiry()/10)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Repo.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("re-sign TUF timestamps", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Banner writes the startup summary a newcomer sees.
func (s *Server) Banner(w io.Writer, addr string) {
	fmt.Fprintf(w, "Flotilla control plane\n")
	fmt.Fprintf(w, "  data dir      %s\n", s.Config.DataDir)
	fmt.Fprintf(w, "  database      %s\n", redactURL(s.Config.DatabaseURL))
	if s.Config.BlobURL != "" {
		fmt.Fprintf(w, "  blob store    %s\n", s.Config.BlobURL)
	} else {
		fmt.Fprintf(w, "  blob store    %s\n", s.Config.BlobDir)
	}
	for _, c := range s.Config.DMF {
		serves := "every tenant"
		if c.Tenant != "" {
			serves = "tenant " + c.Tenant
		}
		fmt.Fprintf(w, "  DMF (AMQP)    %s, for %s\n", redactURL(c.URL), serves)
	}
	if s.AdminToken != "" {
		fmt.Fprintf(w, "  admin token   %s\n", s.AdminToken)
		fmt.Fprintf(w, "                (shown once; also saved to %s)\n", filepath.Join(s.Config.DataDir, "admin-token"))
	} else if s.Config.AdminToken == "" {
		fmt.Fprintf(w, "  admin token   in %s\n", filepath.Join(s.Config.DataDir, "admin-token"))
	}
	// Last, so that whoever waits for this line has seen everything above.
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	fmt.Fprintf(w, "  listening on  %s://%s\n", scheme, addr)
}
