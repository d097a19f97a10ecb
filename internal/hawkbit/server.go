// Package hawkbit serves Eclipse hawkBit's Management API v1 under
// /rest/v1, so that hawkBit's tooling, scripts and the test suites of
// hawkBit clients run against Flotilla unchanged.
//
// It is a translation, not a second model: targets are devices, software
// modules are modules, distribution sets are releases, actions are
// deployments, rollouts are rollouts (with a number, as hawkBit's ids are
// integers), and system configs are tenant settings. Every call goes
// through the same core operations — and the same scopes — as the native
// API. Field names, status codes, paging (offset, limit, sort) and FIQL
// queries (q) follow hawkBit's published documentation; errors come in
// hawkBit's shape.
package hawkbit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/ratelimit"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

// Prefix is where the API lives.
const Prefix = "/rest/v1"

// Options configure the API.
type Options struct {
	// PublicURL is the externally visible base URL, for _links.
	PublicURL string
	// AuthFailures bounds failed authentications per client address.
	AuthFailures *ratelimit.Limiter
}

// Server is the Management API handler.
type Server struct {
	core *core.Core
	log  *slog.Logger
	opts Options
	mux  *http.ServeMux
}

// NewServer returns the API.
func NewServer(c *core.Core, log *slog.Logger, opts Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{core: c, log: log, opts: opts, mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// call is one authenticated request: the principal, and the tenant the
// request addresses (the one a "TENANT\user" name gives, else the token's).
type call struct {
	p      core.Principal
	tenant string
}

type handler func(w http.ResponseWriter, r *http.Request, c call)

func (s *Server) handle(pattern string, h handler) {
	s.mux.Handle(pattern, s.authed(h))
}

// authed accepts HTTP Basic whose password is a Flotilla API token (any
// user name; "TENANT\user" names the tenant, as in hawkBit), or a Bearer
// token.
func (s *Server) authed(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		ip := wire.ClientIP(r)
		if blocked, wait := s.opts.AuthFailures.Blocked(ip, now); blocked {
			s.error(w, r, wire.RateLimited("too many failed authentications from %s", ip, wait))
			return
		}
		secret, tenant := credentials(r)
		p, err := s.core.Authenticate(r.Context(), secret)
		if err != nil {
			if flotilla.IsCode(err, flotilla.EUnauthorized) {
				s.opts.AuthFailures.Allow(ip, now)
				w.Header().Set("WWW-Authenticate", `Basic realm="hawkBit"`)
			}
			s.error(w, r, err)
			return
		}
		if tenant, err = p.TenantFor(tenant); err != nil {
			s.error(w, r, err)
			return
		}
		h(w, r, call{p: p, tenant: tenant})
	})
}

func credentials(r *http.Request) (secret, tenant string) {
	scheme, rest, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		return strings.TrimSpace(rest), ""
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return "", ""
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		if t, _, ok := strings.Cut(user, `\`); ok {
			tenant = strings.ToLower(t)
		}
		return pass, tenant
	}
	return "", ""
}

// errorBody is hawkBit's error shape.
type errorBody struct {
	ExceptionClass string   `json:"exceptionClass"`
	ErrorCode      string   `json:"errorCode"`
	Message        string   `json:"message"`
	Info           []string `json:"info,omitempty"`
}

// hawkBit's exception classes and error codes for Flotilla's error codes.
var errorShapes = map[string][2]string{
	flotilla.ENotFound:     {"org.eclipse.hawkbit.repository.exception.EntityNotFoundException", "hawkbit.server.error.repo.entitiyNotFound"},
	flotilla.EConflict:     {"org.eclipse.hawkbit.repository.exception.EntityAlreadyExistsException", "hawkbit.server.error.repo.entitiyAlreayExists"},
	flotilla.EInvalid:      {"org.eclipse.hawkbit.repository.exception.ConstraintViolationException", "hawkbit.server.error.repo.constraintViolation"},
	flotilla.EForbidden:    {"org.eclipse.hawkbit.exception.InsufficientPermissionException", "hawkbit.server.error.insufficientpermission"},
	flotilla.EUnauthorized: {"org.springframework.security.authentication.BadCredentialsException", "hawkbit.server.error.unauthorized"},
	flotilla.ETooLarge:     {"org.eclipse.hawkbit.repository.exception.FileSizeQuotaExceededException", "hawkbit.server.error.quota.fileSizeExceeded"},
	flotilla.ETooMany:      {"org.eclipse.hawkbit.repository.exception.AssignmentQuotaExceededException", "hawkbit.server.error.quota.assignmentExceeded"},
	flotilla.ENoSpace:      {"org.eclipse.hawkbit.repository.exception.StorageQuotaExceededException", "hawkbit.server.error.quota.storageExceeded"},
}

func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	code := flotilla.ErrorCode(err)
	status := wire.Status(code)
	var fe *flotilla.Error
	msg := "internal error"
	if errors.As(err, &fe) {
		msg = fe.Message
		if fe.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(fe.RetryAfter.Seconds()+0.999)))
		}
	}
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	shape, ok := errorShapes[code]
	if !ok {
		shape = [2]string{"java.lang.RuntimeException", "hawkbit.server.error.unknown"}
	}
	writeJSON(w, status, errorBody{ExceptionClass: shape[0], ErrorCode: shape[1], Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"exceptionClass":"java.lang.RuntimeException","errorCode":"hawkbit.server.error.unknown","message":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/hal+json;charset=UTF-8")
	w.WriteHeader(status)
	w.Write(b)
}

// decode reads a JSON body leniently (hawkBit's clients send fields this
// server does not use), failing in hawkBit's shape.
func decode(r *http.Request, v any) error {
	return wire.DecodeLenient(r, v)
}

func (s *Server) base(r *http.Request) string { return wire.BaseURL(s.opts.PublicURL, r) + Prefix }

// link is hawkBit's {"href": ...}.
type link struct {
	Href string `json:"href"`
}

type links map[string]link

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func msPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

// audit is hawkBit's created/modified fields.
type audit struct {
	CreatedBy      string `json:"createdBy"`
	CreatedAt      int64  `json:"createdAt"`
	LastModifiedBy string `json:"lastModifiedBy"`
	LastModifiedAt int64  `json:"lastModifiedAt"`
}

func auditOf(created, modified time.Time) audit {
	if modified.IsZero() {
		modified = created
	}
	return audit{CreatedBy: "flotilla", CreatedAt: ms(created), LastModifiedBy: "flotilla", LastModifiedAt: ms(modified)}
}

// paged is hawkBit's list answer.
type paged struct {
	Content any `json:"content"`
	Total   int `json:"total"`
	Size    int `json:"size"`
}

// page reads offset and limit (default 50, at most 500).
func page(r *http.Request) (offset, limit int, err error) {
	q := r.URL.Query()
	offset, limit = 0, 50
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, flotilla.Errorf(flotilla.EInvalid, "offset must be a number from 0, got %q", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return 0, 0, flotilla.Errorf(flotilla.EInvalid, "limit must be a number from 1, got %q", v)
		}
		limit = min(limit, 500)
	}
	return offset, limit, nil
}

// sortKey is one "field:ASC|DESC" of sort=.
type sortKey struct {
	field string
	desc  bool
}

func parseSort(r *http.Request, known func(string) bool) ([]sortKey, error) {
	var out []sortKey
	for _, part := range strings.Split(r.URL.Query().Get("sort"), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		field, dir, _ := strings.Cut(part, ":")
		field = strings.ToLower(strings.TrimSpace(field))
		if !known(field) {
			return nil, flotilla.Errorf(flotilla.EInvalid, "cannot sort by %q", field)
		}
		switch strings.ToUpper(strings.TrimSpace(dir)) {
		case "", "ASC":
			out = append(out, sortKey{field: field})
		case "DESC":
			out = append(out, sortKey{field: field, desc: true})
		default:
			return nil, flotilla.Errorf(flotilla.EInvalid, "sort direction %q: use ASC or DESC", dir)
		}
	}
	return out, nil
}

// listOf filters, sorts and pages items by their fields, as hawkBit's
// list endpoints do.
func listOf[T any](r *http.Request, items []T, fields func(T) Fields, knownFilter func(string) bool, names string, defaultSort []sortKey) (paged, error) {
	f, err := ParseFilter(r.URL.Query().Get("q"), knownFilter, names)
	if err != nil {
		return paged{}, err
	}
	keys, err := parseSort(r, knownFilter)
	if err != nil {
		return paged{}, err
	}
	if len(keys) == 0 {
		keys = defaultSort
	}
	var kept []T
	for _, it := range items {
		if f.Match(fields(it)) {
			kept = append(kept, it)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool {
		for _, k := range keys {
			a, _ := fields(kept[i])(k.field)
			b, _ := fields(kept[j])(k.field)
			c := compare(first(a), first(b))
			if c == 0 {
				continue
			}
			return (c < 0) != k.desc
		}
		return false
	})
	offset, limit, err := page(r)
	if err != nil {
		return paged{}, err
	}
	total := len(kept)
	kept = kept[min(offset, total):min(offset+limit, total)]
	if kept == nil {
		kept = []T{}
	}
	return paged{Content: kept, Total: total, Size: len(kept)}, nil
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func knownIn(names ...string) func(string) bool {
	return func(f string) bool {
		for _, n := range names {
			if f == n || strings.HasSuffix(n, ".*") && strings.HasPrefix(f, strings.TrimSuffix(n, "*")) {
				return true
			}
		}
		return false
	}
}

func pathInt(r *http.Request, name, what string) (int64, error) {
	v, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil {
		return 0, flotilla.Errorf(flotilla.ENotFound, "%s with given identifier {%s} does not exist.", what, r.PathValue(name))
	}
	return v, nil
}

func (s *Server) routes() {
	s.targetRoutes()
	s.moduleRoutes()
	s.setRoutes()
	s.rolloutRoutes()
	s.configRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "no such Management API resource: %s %s", r.Method, r.URL.Path))
	})
}
