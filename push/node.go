package push

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/tuf"
)

// Installer installs a verified payload. Returning an error fails the
// update; the node keeps (or restores) its previous version.
type Installer interface {
	Install(ctx context.Context, a Artifact, payload string) error
}

// InstallerFunc adapts a function to Installer.
type InstallerFunc func(ctx context.Context, a Artifact, payload string) error

// Install implements Installer.
func (f InstallerFunc) Install(ctx context.Context, a Artifact, payload string) error {
	return f(ctx, a, payload)
}

// NodeConfig configures a Node.
type NodeConfig struct {
	// StateDir keeps the node's state and partial payloads across restarts.
	StateDir string
	// Version is the version running before the first update.
	Version  string
	DeviceID string
	Labels   map[string]string
	// Token, if set, must be sent as "Authorization: Bearer TOKEN".
	Token     string
	Installer Installer
	Logger    *slog.Logger
	// MaxRate limits how fast the node reads a payload (bytes per second);
	// 0 means unlimited. Useful to emulate slow links.
	MaxRate int64
	// NoFetch makes the node ignore a start request's URL and wait for
	// the bytes to be sent, as a node that cannot reach object storage.
	NoFetch bool
	// HTTPClient fetches from a start request's URL (default: a client
	// with a 30s response-header timeout).
	HTTPClient *http.Client
	// TrustedRoot, if set, is the tenant's pinned TUF root.json, and
	// MetadataURL the tenant's repository on the server
	// (https://ota.example.com/TENANT/tuf/): the node then installs only
	// updates whose start request names a signed target (package tuf),
	// not older than what runs unless signed as a downgrade, with exactly
	// the signed bytes; anything else fails with the reason.
	TrustedRoot []byte
	MetadataURL string
}

// Node is the node side of the push protocol, as an http.Handler.
type Node struct {
	cfg NodeConfig
	log *slog.Logger
	mux *http.ServeMux

	mu     sync.Mutex
	st     nodeState
	cancel context.CancelFunc // of the install in progress
	// writing serializes payload uploads.
	writing sync.Mutex
	trust   *tuf.Verifier
}

// nodeState is what the node persists.
type nodeState struct {
	Status
	// Accepted lists every update id the node ever accepted, in order: its
	// own record that no update was applied twice.
	Accepted []string `json:"accepted"`
	// Target and MetadataToken are the current update's signed target and
	// the credential for reading the repository.
	Target        string `json:"target,omitempty"`
	MetadataToken string `json:"metadataToken,omitempty"`
}

// NewNode loads the node's state (resuming where a restart left it).
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.StateDir == "" || cfg.Installer == nil {
		return nil, errors.New("push: NodeConfig.StateDir and Installer are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		// Short connect and header timeouts: a node that cannot reach the
		// storage hands over to the server soon.
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, ResponseHeaderTimeout: 30 * time.Second}}
	}
	n := &Node{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if len(cfg.TrustedRoot) > 0 {
		v, err := tuf.New(tuf.Config{Root: cfg.TrustedRoot, MetadataURL: cfg.MetadataURL, Dir: filepath.Join(cfg.StateDir, "tuf"),
			Client: cfg.HTTPClient, Authorize: n.authorizeMetadata})
		if err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
		n.trust = v
	}
	n.st.State, n.st.Version = StateIdle, cfg.Version
	if b, err := os.ReadFile(n.statePath()); err == nil {
		if err := json.Unmarshal(b, &n.st); err != nil {
			return nil, fmt.Errorf("push: read state: %w", err)
		}
	}
	// An install a crash interrupted is reported as failed; bytes still to
	// receive keep their offset (the file holds them).
	if n.st.State == StateVerifying || n.st.State == StateApplying {
		n.st.State, n.st.Error = StateFailed, "interrupted by a restart during "+n.st.State
		n.save()
	}
	if n.st.State == StateReceiving {
		// A fetch the restart cut short is not resumed (its URL may have
		// expired): the server sees "fetching" false and sends the rest.
		n.st.Fetching = false
		if fi, err := os.Stat(n.payloadPath()); err == nil {
			n.st.BytesReceived = fi.Size()
		} else {
			n.st.BytesReceived = 0
		}
	}
	n.mux.HandleFunc("POST "+PathUpdate, n.handleStart)
	n.mux.HandleFunc("GET "+PathStatus, n.handleStatus)
	n.mux.HandleFunc("PUT "+pathPayload, n.handlePayload)
	n.mux.HandleFunc("POST "+pathAbort, n.handleAbort)
	n.mux.HandleFunc("GET "+PathInfo, n.handleInfo)
	return n, nil
}

// authorizeMetadata sends the credential the server gave with the current
// update when the node reads the repository.
func (n *Node) authorizeMetadata(req *http.Request) {
	n.mu.Lock()
	tok := n.st.MetadataToken
	n.mu.Unlock()
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
}

func (n *Node) statePath() string   { return filepath.Join(n.cfg.StateDir, "push-state.json") }
func (n *Node) payloadPath() string { return filepath.Join(n.cfg.StateDir, "push-payload.bin") }

// save persists the state; the caller holds n.mu.
func (n *Node) save() {
	n.st.UpdatedAt = time.Now().UTC()
	b, _ := json.Marshal(n.st)
	tmp := n.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		os.Rename(tmp, n.statePath())
	}
}

// Status returns the node's current status.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.Status
}

// Accepted returns every update id the node ever accepted.
func (n *Node) Accepted() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.st.Accepted...)
}

// ServeHTTP implements http.Handler.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n.cfg.Token != "" {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(n.cfg.Token)) != 1 {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "send 'Authorization: Bearer <node token>'", "")
			return
		}
	}
	n.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg, current string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message, b.Current = code, msg, current
	writeJSON(w, status, b)
}

func (n *Node) handleStart(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error(), "")
		return
	}
	req, err := ParseStart(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error(), "")
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.st.ID == req.ID:
		writeJSON(w, http.StatusAccepted, n.st.Status) // the same update again
		return
	case !Terminal(n.st.State):
		writeErr(w, http.StatusConflict, "conflict", fmt.Sprintf("update %s is in progress", n.st.ID), n.st.ID)
		return
	case slices.Contains(n.st.Accepted, req.ID):
		// An id is used once: a server that lost track must not make the
		// node apply the same update twice.
		writeErr(w, http.StatusConflict, "conflict", fmt.Sprintf("update %s was already handled by this node", req.ID), n.st.ID)
		return
	}
	if n.trust != nil && req.Target == "" {
		writeErr(w, http.StatusUnprocessableEntity, "unsigned", fmt.Sprintf("this node installs signed releases only, and %s %s names no signed target: sign it (flotilla release sign) in a tenant with a root (flotilla trust init)",
			req.Artifact.Name, req.Artifact.Version), "")
		return
	}
	os.Remove(n.payloadPath())
	n.st.Status = Status{ID: req.ID, State: StateReceiving, Total: req.Artifact.Size, Artifact: req.Artifact, Version: n.st.Version}
	n.st.Accepted = append(n.st.Accepted, req.ID)
	n.st.Target, n.st.MetadataToken = req.Target, req.MetadataToken
	fetch := req.URL != "" && !n.cfg.NoFetch && req.Artifact.Size > 0
	if fetch {
		n.st.Fetching = true
		ctx, cancel := context.WithCancel(context.Background())
		n.cancel = cancel
		go n.fetch(ctx, req.ID, req.URL)
	}
	n.save()
	n.log.Info("push update accepted", "id", req.ID, "artifact", req.Artifact.Name, "version", req.Artifact.Version, "fetch", fetch)
	writeJSON(w, http.StatusAccepted, n.st.Status)
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Status())
}

func (n *Node) handleInfo(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	info := Info{DeviceID: n.cfg.DeviceID, Version: n.st.Version, Labels: n.cfg.Labels}
	n.mu.Unlock()
	if info.Labels == nil {
		info.Labels = map[string]string{}
	}
	writeJSON(w, http.StatusOK, info)
}
