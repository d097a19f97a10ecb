package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/servertest"
)

// fixture is tenant A ("acme") with one of everything, plus tokens.
type fixture struct {
	srv     *proc
	admin   *servertest.API
	a, b    *servertest.API // admin-scoped tokens of tenant acme and tenant beta
	params  map[string]string
	routes  []route
	tokenID string
}

type route struct{ method, path string }

func (r route) String() string { return r.method + " " + r.path }

func newFixture(t *testing.T) *fixture {
	srv := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	admin := &servertest.API{T: t, Base: srv.URL, Token: adminSecret}
	f := &fixture{srv: srv, admin: admin}
	for _, tn := range []string{"acme", "beta"} {
		admin.Must(201, "POST", "/api/v1/tenants", map[string]any{"name": tn}, nil)
	}
	var tok struct{ ID, Token string }
	admin.Must(201, "POST", "/api/v1/tokens", map[string]any{"tenant": "acme", "scopes": []string{"admin"}}, &tok)
	f.a = &servertest.API{T: t, Base: srv.URL, Token: tok.Token}
	f.tokenID = tok.ID
	admin.Must(201, "POST", "/api/v1/tokens", map[string]any{"tenant": "beta", "scopes": []string{"admin"}}, &tok)
	f.b = &servertest.API{T: t, Base: srv.URL, Token: tok.Token}
	setupTenantResources(t, f)

	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	admin.Must(200, "GET", "/api/v1/openapi.json", nil, &doc)
	for p, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			f.routes = append(f.routes, route{strings.ToUpper(m), p})
		}
	}
	sort.Slice(f.routes, func(i, j int) bool { return f.routes[i].String() < f.routes[j].String() })
	return f
}

// setupTenantResources gives tenant acme one resource of each kind and
// records the path parameters that reach them.
func setupTenantResources(t *testing.T, f *fixture) {
	f.a.Must(201, "PUT", "/api/v1/artifacts/fw/1.0.0", []byte("acme firmware"), nil)
	// acme signs its releases, so the walk covers the trust routes too.
	servertest.SignTenant(f.a).Sign(f.a, "fw", "1.0.0", "fw-1.0.0", []byte("acme firmware"))
	f.a.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "acme-dev"}, nil)
	f.params = map[string]string{"tenant": "acme", "name": "fw", "version": "1.0.0", "id": "acme-dev", "file": "root.json"}
	extendFixture(t, f)
}

// routeBodies gives a valid request body per route, so that the walk tests
// authorization rather than validation. Every route needs an entry.
var routeBodies = map[string]any{
	"POST /api/v1/tenants":                               map[string]any{"name": "stolen"},
	"PATCH /api/v1/tenants/{tenant}":                     map[string]any{"anonymous_ddi": true},
	"POST /api/v1/tokens":                                map[string]any{"tenant": "acme", "scopes": []string{"artifacts:read"}},
	"PUT /api/v1/artifacts/{name}/{version}":             []byte("evil bytes"),
	"PATCH /api/v1/artifacts/{name}/{version}":           map[string]any{"description": "pwned"},
	"POST /api/v1/devices":                               map[string]any{"tenant": "acme", "id": "evil-dev"},
	"PATCH /api/v1/devices/{id}":                         map[string]any{"labels": map[string]string{"pwned": "yes"}},
	"POST /api/v1/devices/{id}/token":                    nil,
	"GET /api/v1/info":                                   nil,
	"GET /api/v1/rollouts/{id}/history":                  nil,
	"POST /api/v1/devices/{id}/node-token":               nil,
	"GET /api/v1/openapi.json":                           nil,
	"GET /api/v1/tenants":                                nil,
	"GET /api/v1/tenants/{tenant}":                       nil,
	"GET /api/v1/tokens":                                 nil,
	"DELETE /api/v1/tokens/{id}":                         nil,
	"GET /api/v1/artifacts":                              nil,
	"GET /api/v1/artifacts/{name}/{version}":             nil,
	"DELETE /api/v1/artifacts/{name}/{version}":          nil,
	"GET /api/v1/artifacts/{name}/{version}/content":     nil,
	"GET /api/v1/devices":                                nil,
	"GET /api/v1/fleet":                                  nil,
	"GET /api/v1/devices/{id}":                           nil,
	"DELETE /api/v1/devices/{id}":                        nil,
	"POST /api/v1/devices/{id}/deployments":              map[string]any{"artifact": map[string]string{"name": "fw", "version": "1.0.0"}},
	"GET /api/v1/devices/{id}/deployments":               nil,
	"GET /api/v1/devices/{id}/deployments/{did}":         nil,
	"POST /api/v1/devices/{id}/deployments/{did}/cancel": nil,
	"POST /api/v1/devices/{id}/updates":                  map[string]any{"id": "6f1c2d4e-0000-4000-8000-0000000000aa", "artifact": map[string]string{"name": "fw", "version": "1.0.0"}},
	"GET /api/v1/devices/{id}/updates/{uid}":             nil,
	"POST /api/v1/devices/{id}/updates/{uid}/abort":      nil,
	"GET /api/cluster/node/versions":                     nil,
	"POST /api/rollout":                                  map[string]any{"firmware": map[string]string{"name": "fw", "version": "1.0.0"}, "nodes": []map[string]string{{"ip": "10.9.9.9"}}},
	"GET /api/registry/health":                           nil,
	"GET /api/registry/firmware":                         nil,
	"POST /api/registry/firmware":                        nil,
	"GET /api/registry/firmware/{name}/{version}":        nil,
	"PUT /api/registry/firmware/{name}/{version}":        map[string]any{"labels": map[string]string{"pwned": "yes"}},
	"POST /api/v1/rollouts":                              map[string]any{"name": "evil", "artifact": map[string]string{"name": "fw", "version": "1.0.0"}},
	"POST /api/v1/rollouts/preview":                      map[string]any{"selector": ""},
	"GET /api/v1/rollouts":                               nil,
	"GET /api/v1/rollouts/{id}":                          nil,
	"DELETE /api/v1/rollouts/{id}":                       nil,
	"POST /api/v1/rollouts/{id}/start":                   nil,
	"POST /api/v1/rollouts/{id}/pause":                   nil,
	"POST /api/v1/rollouts/{id}/resume":                  nil,
	"POST /api/v1/rollouts/{id}/abort":                   nil,
	"POST /api/v1/rollouts/{id}/retry":                   nil,
	"POST /api/v1/rollouts/{id}/next-wave":               nil,
	"GET /api/v1/rollouts/{id}/runs":                     nil,
	"GET /api/v1/rollouts/{id}/devices":                  nil,
	"POST /api/v1/policies":                              map[string]any{"name": "evil", "policy": map[string]any{}},
	"GET /api/v1/policies":                               nil,
	"GET /api/v1/policies/{name}":                        nil,
	"PUT /api/v1/policies/{name}":                        map[string]any{"policy": map[string]any{"retries": 3}},
	"DELETE /api/v1/policies/{name}":                     nil,
	"GET /api/v1/channels":                               nil,
	"GET /api/v1/channels/{name}":                        nil,
	"PUT /api/v1/channels/{name}":                        map[string]any{"artifact": map[string]string{"name": "fw", "version": "1.0.0"}},
	"DELETE /api/v1/channels/{name}":                     nil,
	"GET /api/v1/trust":                                  nil,
	"POST /api/v1/modules":                               map[string]any{"name": "evil", "version": "1"},
	"GET /api/v1/modules":                                nil,
	"GET /api/v1/modules/{id}":                           nil,
	"DELETE /api/v1/modules/{id}":                        nil,
	"PUT /api/v1/modules/{id}/files/{filename}":          []byte("evil bytes"),
	"DELETE /api/v1/modules/{id}/files/{filename}":       nil,
	"POST /api/v1/releases":                              map[string]any{"name": "evil", "version": "1", "modules": []int{1}},
	"GET /api/v1/trust/metadata/{file}":                  nil,
	"POST /api/v1/trust/metadata":                        map[string]any{"root": map[string]any{"signed": map[string]any{}}},
}

// public routes need no token.
var publicRoutes = []string{"GET /api/v1/openapi.json"}

// streamRoutes stream until the client leaves; the walk only checks that
// another tenant is refused before streaming starts.
var streamRoutes = []string{"GET /api/v1/events"}

// readPosts are POST routes that only read.
var readPosts = []string{"POST /api/v1/rollouts/preview"}

func (f *fixture) expand(t *testing.T, r route) string {
	p := r.path
	for k, v := range f.params {
		val := v
		if k == "id" && strings.HasPrefix(r.path, "/api/v1/tokens/") {
			val = f.tokenID
		}
		if override, ok := f.params[routeParamKey(r.path, k)]; ok {
			val = override
		}
		if override, ok := f.params[k+"@"+r.path]; ok {
			val = override
		}
		p = strings.ReplaceAll(p, "{"+k+"}", url.PathEscape(val))
	}
	if strings.Contains(p, "{") {
		t.Fatalf("route %s has a parameter the fixture does not fill: %s", r, p)
	}
	return p
}

// routeParamKey lets extendFixture give a parameter a per-path value, e.g.
// "{id}@/api/v1/rollouts".
func routeParamKey(path, param string) string {
	for _, prefix := range []string{"/api/v1/rollouts", "/api/v1/policies", "/api/v1/channels", "/api/v1/modules"} {
		if strings.HasPrefix(path, prefix) {
			return param + "@" + prefix
		}
	}
	return param + "@"
}

// TestTenantIsolation walks every route of the management API with tenant
// beta's admin token against tenant acme's resources: each call is a 404 or
// 403, and afterwards acme's resources are unchanged.
func TestTenantIsolation(t *testing.T) {
	f := newFixture(t)
	for _, r := range f.routes {
		if slices.Contains(publicRoutes, r.String()) {
			continue
		}
		if slices.Contains(streamRoutes, r.String()) {
			code, out := f.b.Do(r.method, r.path+"?tenant=acme", nil)
			if code != http.StatusNotFound {
				t.Errorf("%s?tenant=acme as beta = %d %s; want 404", r, code, out)
			}
			continue
		}
		body, ok := routeBodies[r.String()]
		if !ok {
			t.Errorf("route %s has no entry in routeBodies; add one so the isolation walk covers it", r)
			continue
		}
		p := f.expand(t, r)
		// Addressing acme explicitly must fail.
		code, out := f.b.Do(r.method, addQuery(p, "tenant=acme"), body)
		if r.String() == "GET /api/v1/tenants" {
			if code != 200 || strings.Contains(string(out), "acme") {
				t.Errorf("%s as beta = %d %s; must list only beta", p, code, out)
			}
		} else if code != http.StatusNotFound && code != http.StatusForbidden {
			t.Errorf("%s %s?tenant=acme as beta = %d %s; want 404 or 403", r.method, p, code, out)
		}
		// Without the parameter the call targets beta's own tenant: it may
		// succeed there, but must not reveal or reach acme's resources.
		code, out = f.b.Do(r.method, p, body)
		if code < 300 && strings.Contains(string(out), "acme") {
			t.Errorf("%s %s as beta = %d and mentions acme: %s", r.method, p, code, out)
		}
		if code >= 300 && code != http.StatusNotFound && code != http.StatusForbidden && code != http.StatusBadRequest {
			t.Errorf("%s %s as beta = %d %s; want success (or a 400) in beta's own tenant, 404 or 403", r.method, p, code, out)
		}
	}
	// Acme's resources survived the walk untouched.
	if got := f.a.Must(200, "GET", "/api/v1/artifacts/fw/1.0.0/content", nil, nil); string(got) != "acme firmware" {
		t.Fatalf("acme artifact changed: %q", got)
	}
	var d struct{ Labels map[string]string }
	f.a.Must(200, "GET", "/api/v1/devices/acme-dev", nil, &d)
	if d.Labels["pwned"] != "" {
		t.Fatal("beta changed acme's device")
	}
	f.a.Must(200, "GET", "/api/v1/tokens", nil, nil)
	checkFixtureIntact(t, f)
}

func addQuery(p, q string) string {
	if strings.Contains(p, "?") {
		return p + "&" + q
	}
	return p + "?" + q
}

// TestReadOnlyTokenCannotWrite shows a token with only read scopes gets 403
// on every write route of its own tenant, and can read.
func TestReadOnlyTokenCannotWrite(t *testing.T) {
	f := newFixture(t)
	var tok struct{ Token string }
	f.a.Must(201, "POST", "/api/v1/tokens", map[string]any{"scopes": []string{"artifacts:read", "devices:read", "rollouts:read"}}, &tok)
	ro := &servertest.API{T: t, Base: f.srv.URL, Token: tok.Token}
	for _, r := range f.routes {
		if slices.Contains(publicRoutes, r.String()) || slices.Contains(streamRoutes, r.String()) {
			continue
		}
		p := f.expand(t, r)
		code, out := ro.Do(r.method, p, routeBodies[r.String()])
		switch {
		case (r.method == "GET" || slices.Contains(readPosts, r.String())) && !strings.HasPrefix(r.path, "/api/v1/tokens"):
			if code != 200 {
				t.Errorf("read-only %s %s = %d %s, want 200", r.method, p, code, out)
			}
		default:
			if code != http.StatusForbidden {
				t.Errorf("read-only %s %s = %d %s, want 403", r.method, p, code, out)
			}
		}
	}
	// A token cannot grant scopes it lacks.
	code, _ := ro.Do("POST", "/api/v1/tokens", map[string]any{"scopes": []string{"artifacts:write"}})
	if code != 403 {
		t.Fatalf("escalation = %d, want 403", code)
	}
	// No token, a bad token and a revoked token are 401s.
	for _, secret := range []string{"", "flt_nope"} {
		c, body := (&servertest.API{T: t, Base: f.srv.URL, Token: secret}).Do("GET", "/api/v1/artifacts", nil)
		if c != 401 || servertest.ErrorCode(t, body) != "unauthorized" {
			t.Fatalf("token %q = %d %s", secret, c, body)
		}
	}
	var list struct {
		Items []struct{ ID string }
	}
	f.a.Must(200, "GET", "/api/v1/tokens", nil, &list)
	for _, it := range list.Items {
		f.a.Must(204, "DELETE", "/api/v1/tokens/"+it.ID, nil, nil)
	}
	if c, _ := ro.Do("GET", "/api/v1/artifacts", nil); c != 401 {
		t.Fatalf("revoked token = %d, want 401", c)
	}
}
