// Package agent is the runtime of `flotilla agent`: a device daemon built on
// the public updater SDK that installs artifacts with a built-in file
// installer or a shell command, checks the device's health afterwards, rolls
// back when it is unhealthy, and survives a crash at any point.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla/push"
	"github.com/flotilla-ota/flotilla/updater"
)

// Config is everything the agent needs; cmd/flotilla fills it from flags,
// environment and an optional config file.
type Config struct {
	Server         string            `json:"server"`
	Tenant         string            `json:"tenant"`
	DeviceID       string            `json:"device_id"`
	Token          string            `json:"token"`
	GatewayToken   string            `json:"gateway_token"`
	Labels         map[string]string `json:"labels"`
	Attributes     map[string]string `json:"attributes"`
	Channel        string            `json:"channel"`
	StateDir       string            `json:"state_dir"`
	CurrentVersion string            `json:"current_version"`

	// Target is the file the built-in installer replaces atomically; the
	// previous version is kept next to it as Target+".prev".
	Target string `json:"target"`
	// InstallCommand runs instead of the file installer; {file},
	// {version} and {name} are substituted.
	InstallCommand  string `json:"install_command"`
	RollbackCommand string `json:"rollback_command"`

	// HealthCommand (exit 0) or HealthURL (2xx) must report healthy
	// within HealthGrace after an install, or the agent rolls back.
	HealthCommand  string        `json:"health_command"`
	HealthURL      string        `json:"health_url"`
	HealthGrace    time.Duration `json:"health_grace"`
	HealthInterval time.Duration `json:"health_interval"`

	// FirstCheck is the longest wait before the first poll (the wait is
	// drawn between zero and it).
	FirstCheck      time.Duration `json:"first_check"`
	MaxDownloadRate int64         `json:"max_download_rate"`

	// Listen, if set, serves the push protocol there (a push node);
	// ListenToken is the bearer token the server must send.
	Listen      string `json:"listen"`
	ListenToken string `json:"listen_token"`
	// InsecureNoAuth serves Listen without a token, warning at start and
	// on every update.
	InsecureNoAuth bool `json:"insecure_no_auth"`
	// Cert and Key are a client certificate for mutual TLS with the
	// server; CA, the CA its certificate must chain to (PEM files).
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CA   string `json:"ca"`
	// Trust is the tenant's pinned TUF root.json: updates, pulled or
	// pushed, are verified against the signed metadata before they are
	// installed (package tuf). A push node reads the metadata from Server.
	Trust string `json:"trust"`
	// NoFetch makes the push node wait for the server to send the bytes
	// even when it is offered a presigned object-storage URL (nodes with
	// no route to the bucket).
	NoFetch bool `json:"no_fetch"`
}

// Validate fills defaults and reports what is missing.
func (c *Config) Validate() error {
	if c.Server == "" && c.Listen == "" {
		return errors.New("agent: give --server (to poll) or --listen (to receive pushed updates), or both")
	}
	if c.DeviceID == "" {
		b, err := os.ReadFile("/etc/machine-id")
		if err != nil {
			return errors.New("agent: --device-id is required (no /etc/machine-id to default to)")
		}
		c.DeviceID = strings.TrimSpace(string(b))
	}
	if c.Server != "" && c.Token == "" && c.GatewayToken == "" && c.Cert == "" && (c.Listen == "" || c.Trust == "") {
		return errors.New("agent: --token, --gateway-token or a client certificate (--cert, --key) is required to poll")
	}
	if c.Target == "" && c.InstallCommand == "" {
		return errors.New("agent: choose an installer: --target PATH or --install-command CMD")
	}
	if c.Target != "" && c.InstallCommand != "" {
		return errors.New("agent: --target and --install-command exclude each other")
	}
	if c.Trust != "" && c.Server == "" {
		return errors.New("agent: --trust needs --server: a push node reads the signed metadata from the server")
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/flotilla-agent"
	}
	if c.HealthGrace <= 0 {
		c.HealthGrace = 30 * time.Second
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = time.Second
	}
	if c.FirstCheck <= 0 {
		c.FirstCheck = 10 * time.Second
	}
	return nil
}

// state is the agent's own record, next to the SDK's journal.
type state struct {
	Version     string `json:"version"`
	PrevVersion string `json:"prev_version"`
}

func statePath(dir string) string { return filepath.Join(dir, "agent-state.json") }

func loadState(dir string) state {
	var s state
	if b, err := os.ReadFile(statePath(dir)); err == nil {
		json.Unmarshal(b, &s)
	}
	return s
}

func (s state) save(dir string) error {
	b, _ := json.Marshal(s)
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(dir))
}

// Agent runs the update loop of one device.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client *updater.Client
	h      *handler
	hh     updater.Handler
	node   *push.Node
}

// New prepares an agent; Run starts it.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: state dir: %w", err)
	}
	st := loadState(cfg.StateDir)
	if st.Version == "" {
		st.Version = cfg.CurrentVersion
	}
	h := &handler{cfg: cfg, log: log, state: st}
	var hh updater.Handler = h
	if cfg.HealthCommand != "" || cfg.HealthURL != "" {
		hh = &healthHandler{h}
	}
	a := &Agent{cfg: cfg, log: log, h: h, hh: hh}
	var root []byte
	if cfg.Trust != "" {
		var err error
		if root, err = os.ReadFile(cfg.Trust); err != nil {
			return nil, fmt.Errorf("agent: --trust: %w", err)
		}
	}
	tlsCfg, err := updater.LoadTLS(cfg.Cert, cfg.Key, cfg.CA)
	if err != nil {
		return nil, err
	}
	if cfg.Listen != "" {
		nc := push.NodeConfig{StateDir: filepath.Join(cfg.StateDir, "push"), Version: st.Version, DeviceID: cfg.DeviceID,
			Labels: cfg.Labels, Token: cfg.ListenToken, NoFetch: cfg.NoFetch, Installer: push.InstallerFunc(a.installPushed), Logger: log}
		if root != nil {
			tenant := cfg.Tenant
			if tenant == "" {
				tenant = "default"
			}
			nc.TrustedRoot, nc.MetadataURL = root, strings.TrimRight(cfg.Server, "/")+"/"+tenant+"/tuf/"
			if tlsCfg != nil {
				t := http.DefaultTransport.(*http.Transport).Clone()
				t.TLSClientConfig = tlsCfg
				nc.HTTPClient = &http.Client{Transport: t}
			}
		}
		n, err := push.NewNode(nc)
		if err != nil {
			return nil, err
		}
		a.node = n
	}
	if cfg.Server == "" || cfg.Token == "" && cfg.GatewayToken == "" && cfg.Cert == "" {
		if cfg.Server != "" {
			log.Info("push node only: no device credential to poll with; the server is where the node reads signed metadata")
		}
		return a, nil
	}
	c, err := updater.New(updater.Config{
		Server: cfg.Server, Tenant: cfg.Tenant, ControllerID: cfg.DeviceID, Token: cfg.Token, GatewayToken: cfg.GatewayToken,
		CurrentVersion: st.Version, Channel: cfg.Channel, Labels: cfg.Labels, Attributes: cfg.Attributes,
		Handler: hh, StateDir: filepath.Join(cfg.StateDir, "updater"), Logger: log,
		FirstCheck: updater.Interval{Min: 0, Max: cfg.FirstCheck}, MaxDownloadRate: cfg.MaxDownloadRate,
		TLS: tlsCfg, TrustedRoot: root,
	})
	if err != nil {
		return nil, err
	}
	a.client = c
	return a, nil
}

// installPushed installs an update the server pushed, with the same
// installer, health check and rollback as a pulled one.
func (a *Agent) installPushed(ctx context.Context, art push.Artifact, payload string) error {
	if a.cfg.ListenToken == "" {
		a.log.Warn("installing a pushed update that nobody authenticated (--insecure-no-auth)", "name", art.Name, "version", art.Version)
	}
	u := &updater.Update{Name: art.Name, Version: art.Version, Type: "binary",
		Artifacts: []updater.Artifact{{Filename: art.Name, Size: art.Size, SHA256: art.SHA256}}}
	if err := a.hh.Apply(ctx, u, &updater.Payload{Path: payload, Files: []string{payload}}); err != nil {
		return err
	}
	if hc, ok := a.hh.(updater.HealthChecker); ok {
		if err := hc.CheckHealth(ctx, u); err != nil {
			if rb, ok := a.hh.(updater.RollBacker); ok {
				if rerr := rb.RollBack(ctx, u); rerr != nil {
					return fmt.Errorf("unhealthy (%v) and roll back failed: %v", err, rerr)
				}
				return fmt.Errorf("unhealthy, rolled back: %v", err)
			}
			return fmt.Errorf("unhealthy: %v", err)
		}
	}
	return nil
}

// Run polls and/or listens until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	var srv *http.Server
	errc := make(chan error, 1)
	if a.node != nil {
		ln, err := net.Listen("tcp", a.cfg.Listen)
		if err != nil {
			return fmt.Errorf("agent: listen: %w", err)
		}
		srv = &http.Server{Handler: a.node, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- srv.Serve(ln) }()
		a.log.Info("push node listening", "addr", ln.Addr().String(), "device", a.cfg.DeviceID, "version", a.node.Status().Version)
		if a.cfg.ListenToken == "" {
			a.log.Warn("the push listener requires no token (--insecure-no-auth): anyone who reaches it can install software")
		}
	}
	if a.client != nil {
		a.log.Info("agent started", "server", a.cfg.Server, "device", a.cfg.DeviceID, "version", a.client.Version())
		if err := a.client.Start(ctx); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("agent: push listener: %w", err)
	}
	if a.client != nil {
		a.client.Stop()
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
	a.log.Info("agent stopped")
	return nil
}
