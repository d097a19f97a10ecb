// Package httpapi serves Flotilla's management REST API under /api/v1:
// tenants, tokens, artifacts, devices, deployments, rollouts and policies,
// authenticated with bearer tokens and described by an OpenAPI document.
//
// Handlers translate HTTP to core calls and back; they hold no business
// rules. Every route is registered in routes.go.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/pushd"
	"github.com/flotilla-ota/flotilla/internal/ratelimit"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

// Options configure the API.
type Options struct {
	// PublicURL is the externally visible base URL, used in links.
	PublicURL string
	// Events is the hub /api/v1/events streams from.
	Events *events.Hub
	// Push delivers updates to listening devices.
	Push *pushd.Pool
	// SporeOpen lets the SPORE-compatible endpoints be used without a
	// token, as the default tenant (for LAN tools that cannot send one).
	SporeOpen bool
	// AuthFailures bounds failed authentications per client address.
	AuthFailures *ratelimit.Limiter
	// StreamsPerToken and Streams cap live event streams per token
	// (default 10) and in all (default 5000).
	StreamsPerToken, Streams int
}

// Server is the management API handler.
type Server struct {
	core   *core.Core
	log    *slog.Logger
	opts   Options
	mux    *http.ServeMux
	routes []string // every registered pattern, for the OpenAPI check

	subscribers subscriberLimits
}

// NewServer returns the management API.
func NewServer(c *core.Core, log *slog.Logger, opts Options) *Server {
	if opts.StreamsPerToken <= 0 {
		opts.StreamsPerToken = 10
	}
	if opts.Streams <= 0 {
		opts.Streams = 5000
	}
	s := &Server{core: c, log: log, opts: opts, mux: http.NewServeMux(),
		subscribers: subscriberLimits{perToken: opts.StreamsPerToken, total: opts.Streams, byToken: map[string]int{}}}
	s.addRoutes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Routes lists the registered patterns ("METHOD /path").
func (s *Server) Routes() []string { return s.routes }

func (s *Server) handle(pattern string, h http.Handler) {
	s.routes = append(s.routes, pattern)
	s.mux.Handle(pattern, h)
}

// authed wraps h so it runs only for a valid bearer token, and hands it
// the principal.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, p core.Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		ip := wire.ClientIP(r)
		if blocked, wait := s.opts.AuthFailures.Blocked(ip, now); blocked {
			s.error(w, r, wire.RateLimited("too many failed authentications from %s", ip, wait))
			return
		}
		secret := bearer(r)
		p, err := s.core.Authenticate(r.Context(), secret)
		if err != nil {
			if flotilla.IsCode(err, flotilla.EUnauthorized) {
				s.opts.AuthFailures.Allow(ip, now)
			}
			s.error(w, r, err)
			return
		}
		h(w, r, p)
	})
}

// bearer extracts the token from the Authorization header. The token
// query parameter is accepted only where a browser cannot send a header —
// a GET of the event stream (WebSocket, EventSource) — since URLs end up
// in logs and histories; never on a write.
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	if r.Method == http.MethodGet && r.URL.Path == "/api/v1/events" {
		return strings.TrimSpace(r.URL.Query().Get("token"))
	}
	return ""
}

func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	wire.Error(w, r, s.log, err)
}

func (s *Server) baseURL(r *http.Request) string { return wire.BaseURL(s.opts.PublicURL, r) }

// detached runs h with a context that outlives the client's connection
// (bounded by timeout): an operation that was fully requested is carried
// out even if the caller hangs up at once.
func detached(timeout time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
