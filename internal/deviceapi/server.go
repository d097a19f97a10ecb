// Package deviceapi serves hawkBit's Direct Device Integration API (DDI v1)
// under /{tenant}/controller/v1/{controllerId}, so that SWUpdate, RAUC,
// Zephyr and Flotilla's own SDK can pull updates.
//
// It has its own mux and its own authentication (TargetToken, GatewayToken
// or anonymous), separate from the management API. Poll answers are cached
// per device and invalidated by the core whenever what a device should be
// told changes, so a device with nothing to do costs no database read.
package deviceapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/ratelimit"
	"github.com/flotilla-ota/flotilla/internal/wire"
	"github.com/flotilla-ota/flotilla/maintenance"
)

// Options configure the device API.
type Options struct {
	// PublicURL is the base URL devices reach the server at; links in
	// answers use it, or the request's host when empty.
	PublicURL string
	// Backoff shortens polling ahead of a maintenance window.
	Backoff maintenance.Backoff
	// OnDownload, if set, is told about every artifact download request
	// (ranged or not), for metrics.
	OnDownload func(ranged bool)
	// MaxCacheAge bounds how long a poll answer is reused without an
	// invalidation; 0 means until invalidated. Replicas sharing a database
	// set it so a lost cross-replica message cannot leave a device stale.
	MaxCacheAge time.Duration
	// DeviceRate bounds each device's requests (nil: no limit); over it a
	// device is answered 429 with Retry-After.
	DeviceRate *ratelimit.Limiter
	// AuthFailures bounds failed authentications per client address.
	AuthFailures *ratelimit.Limiter
	// Presign, if set, gives download-http links straight to the blob
	// store, so downloads do not pass through the server.
	Presign func(ctx context.Context, a flotilla.Artifact) (string, error)
	// Repository, if set, serves each tenant's TUF repository under
	// /{tenant}/tuf/.
	Repository Repository
}

// Repository is the tenants' TUF repositories (package tufrepo).
type Repository interface {
	// File is a metadata file: root.json, 3.root.json, timestamp.json, ...
	File(ctx context.Context, tenant, name string) ([]byte, error)
	// TargetFile is the artifact a target download names.
	TargetFile(ctx context.Context, tenant, name string) (flotilla.Artifact, error)
}

// Server is the DDI handler.
type Server struct {
	core  *core.Core
	log   *slog.Logger
	opts  Options
	mux   *http.ServeMux
	cache *pollCache
	// limits holds the rate limiters, swappable while serving.
	limits atomic.Pointer[limits]
}

type limits struct{ device, authFailures *ratelimit.Limiter }

// SetLimits replaces the rate limiters while serving (nil: no limit); the
// benchmark compares polls with and without them.
func (s *Server) SetLimits(device, authFailures *ratelimit.Limiter) {
	s.limits.Store(&limits{device: device, authFailures: authFailures})
}

// NewServer returns the DDI API. Wire InvalidateLocal to the core's
// Invalidate hook so that cached poll answers follow changes.
func NewServer(c *core.Core, log *slog.Logger, opts Options) *Server {
	if opts.Backoff.Polling == 0 {
		opts.Backoff = maintenance.DefaultBackoff
		opts.Backoff.Polling = c.Config.PollInterval
		if opts.Backoff.MinPolling > opts.Backoff.Polling {
			opts.Backoff.MinPolling = opts.Backoff.Polling
		}
	}
	s := &Server{core: c, log: log, opts: opts, mux: http.NewServeMux(), cache: newPollCache()}
	s.SetLimits(opts.DeviceRate, opts.AuthFailures)
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// InvalidateLocal drops this replica's cached poll answer of a device
// (device "" means every device of the tenant), for changes another
// replica made.
func (s *Server) InvalidateLocal(tenant, device string) { s.cache.invalidate(tenant, device) }

// IsDDIPath reports whether a request path belongs to the device API: DDI
// under /{tenant}/controller/, TUF metadata under /{tenant}/tuf/.
func IsDDIPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, "/")
	return ok && (strings.HasPrefix(rest, "controller/") || strings.HasPrefix(rest, "tuf/"))
}

func (s *Server) routes() {
	const base = "/{tenant}/controller/v1/{controllerId}"
	s.mux.HandleFunc("GET "+base, s.handlePoll)
	s.mux.HandleFunc("GET "+base+"/deploymentBase/{actionId}", s.handleDeploymentBase)
	s.mux.HandleFunc("POST "+base+"/deploymentBase/{actionId}/feedback", s.handleDeploymentFeedback)
	s.mux.HandleFunc("GET "+base+"/cancelAction/{actionId}", s.handleCancelAction)
	s.mux.HandleFunc("POST "+base+"/cancelAction/{actionId}/feedback", s.handleCancelFeedback)
	s.mux.HandleFunc("GET "+base+"/installedBase/{actionId}", s.handleInstalledBase)
	s.mux.HandleFunc("PUT "+base+"/configData", s.handleConfigData)
	s.mux.HandleFunc("GET "+base+"/softwaremodules/{moduleId}/artifacts", s.handleListArtifacts)
	s.mux.HandleFunc("GET "+base+"/softwaremodules/{moduleId}/artifacts/{fileName}", s.handleDownload)
	s.mux.HandleFunc("GET /{tenant}/tuf/{file}", s.handleTUFFile)
	s.mux.HandleFunc("GET /{tenant}/tuf/targets/{path...}", s.handleTUFTarget)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "no such DDI resource: %s %s", r.Method, r.URL.Path))
	})
}

func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	if flotilla.IsCode(err, flotilla.EUnauthorized) {
		w.Header().Set("WWW-Authenticate", `TargetToken realm="flotilla", GatewayToken realm="flotilla"`)
	}
	wire.Error(w, r, s.log, err)
}

// identify authenticates the request; register allows a first poll to
// register the device.
func (s *Server) identify(w http.ResponseWriter, r *http.Request, register bool) (core.DeviceIdentity, bool) {
	id, _, ok := s.authenticate(w, r, register, false)
	return id, ok
}

// authenticate is identify; with poll (a poll, which registers, whose
// answer is not cached) it also returns the view read with the device's
// token, if it was (core.AuthenticatePoll).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, register, poll bool) (core.DeviceIdentity, *core.DeviceView, bool) {
	now := time.Now()
	lim := s.limits.Load()
	ip := wire.ClientIP(r)
	if blocked, wait := lim.authFailures.Blocked(ip, now); blocked {
		s.error(w, r, wire.RateLimited("too many failed authentications from %s", ip, wait))
		return core.DeviceIdentity{}, nil, false
	}
	var id core.DeviceIdentity
	var view *core.DeviceView
	var err error
	if poll {
		id, view, err = s.core.AuthenticatePoll(r.Context(), r.PathValue("tenant"), r.PathValue("controllerId"), r.Header.Get("Authorization"), certIdentity(r))
	} else {
		id, err = s.core.AuthenticateDevice(r.Context(), r.PathValue("tenant"), r.PathValue("controllerId"), r.Header.Get("Authorization"), certIdentity(r), register)
	}
	if err != nil {
		if flotilla.IsCode(err, flotilla.EUnauthorized) {
			lim.authFailures.Allow(ip, now)
		}
		s.error(w, r, err)
		return id, nil, false
	}
	if ok, wait := lim.device.AllowPair(id.Tenant, id.DeviceID, now); !ok {
		s.error(w, r, wire.RateLimited("device %s makes too many requests", id.DeviceID, wait))
		return id, nil, false
	}
	s.core.MarkSeen(id.Tenant, id.DeviceID)
	return id, view, true
}

// certIdentity is the client certificate of the request, if any: one the
// TLS handshake verified against --client-ca, or one a trusted reverse
// proxy vouches for in hawkBit's headers (X-Ssl-Client-Cn, or
// X-Controller-Id, with the issuer hashes in X-Ssl-Issuer-Hash-1..N or
// X-Authority-1..N). Headers from anyone else are ignored.
func certIdentity(r *http.Request) *core.CertIdentity {
	if cn := wire.ClientCertCN(r); cn != "" {
		return &core.CertIdentity{CN: cn, Direct: true}
	}
	if !wire.FromTrustedProxy(r) {
		return nil
	}
	cn := r.Header.Get("X-Ssl-Client-Cn")
	if cn == "" {
		cn = r.Header.Get("X-Controller-Id")
	}
	issuers := ProxyIssuers(r.Header)
	if cn == "" || len(issuers) == 0 {
		return nil
	}
	return &core.CertIdentity{CN: cn, Issuers: issuers}
}

// maxIssuerHeaders bounds the numbered issuer headers read (one per
// certificate of the chain).
const maxIssuerHeaders = 10

// ProxyIssuers reads the issuer hashes a proxy passed on, each header
// possibly holding several separated by ';' or ','.
func ProxyIssuers(h http.Header) []string {
	var out []string
	for i := 1; i <= maxIssuerHeaders; i++ {
		for _, name := range []string{"X-Ssl-Issuer-Hash-", "X-Authority-"} {
			for _, v := range h.Values(name + strconv.Itoa(i)) {
				for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' }) {
					if p := strings.TrimSpace(part); p != "" && len(out) < 64 {
						out = append(out, p)
					}
				}
			}
		}
	}
	return out
}

// deviceBase is the URL prefix of this device's resources, with the tenant
// as the device spelled it.
func (s *Server) deviceBase(r *http.Request) string {
	return wire.BaseURL(s.opts.PublicURL, r) + "/" + r.PathValue("tenant") + "/controller/v1/" + r.PathValue("controllerId")
}

func actionID(w http.ResponseWriter, r *http.Request, s *Server) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("actionId"), 10, 64)
	if err != nil || id <= 0 {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "action %q not found", r.PathValue("actionId")))
		return 0, false
	}
	return id, true
}
