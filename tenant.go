package flotilla

import (
	"slices"
	"strings"
	"time"
)

// DefaultTenant is created at first start and owns the bootstrap admin token.
const DefaultTenant = "default"

// Tenant isolates devices, artifacts, rollouts and tokens from every other
// tenant.
type Tenant struct {
	Name string
	// AnonymousDDI lets devices poll the DDI API without credentials.
	AnonymousDDI bool
	Settings     TenantSettings
	CreatedAt    time.Time
}

// TenantSettings are a tenant's device-facing options, as hawkBit's tenant
// configuration has them.
type TenantSettings struct {
	// HeaderAuth lets devices authenticate with a client certificate that
	// a trusted reverse proxy verified and passed on in headers (the
	// server's --trusted-proxy): the certificate's common name is the
	// device id, and one of its issuer hashes must be in HeaderAuthority.
	HeaderAuth bool `json:"header_auth,omitempty"`
	// HeaderAuthority lists the accepted issuer hashes, separated by ';'
	// or ','.
	HeaderAuthority string `json:"header_authority,omitempty"`
	// PollingTime overrides the server's DDI polling interval for the
	// tenant's devices; MinPollingTime bounds it and the back-off before a
	// maintenance window, which polls MaintenanceWindowPollCount times
	// before the window opens. PollingOverdueTime is how late a poll may
	// be before hawkBit's pollStatus calls the device overdue. Zero: the
	// server's defaults.
	PollingTime                Duration `json:"polling_time,omitempty"`
	MinPollingTime             Duration `json:"min_polling_time,omitempty"`
	PollingOverdueTime         Duration `json:"polling_overdue_time,omitempty"`
	MaintenanceWindowPollCount int      `json:"maintenance_window_poll_count,omitempty"`
	// TargetTokenDisabled and GatewayTokenDisabled refuse those DDI
	// credentials in the tenant (hawkBit's authentication.*.enabled).
	TargetTokenDisabled  bool `json:"target_token_disabled,omitempty"`
	GatewayTokenDisabled bool `json:"gateway_token_disabled,omitempty"`
	// GatewayKeyTokenID is the gateway token made from hawkBit's
	// authentication.gatewaytoken.key, GatewayKeySealed its secret sealed
	// by the server key (hawkBit shows the key back to administrators).
	GatewayKeyTokenID string `json:"gateway_key_token_id,omitempty"`
	GatewayKeySealed  string `json:"gateway_key_sealed,omitempty"`
	// AnonymousDownload lets anyone download the tenant's artifact files
	// over DDI without a credential (hawkBit's anonymous.download.enabled);
	// polling still needs one.
	AnonymousDownload bool `json:"anonymous_download,omitempty"`
}

// AuthorityAccepts reports whether any of the issuer hashes a proxy
// passed on is one the tenant accepts (case does not matter).
func (s TenantSettings) AuthorityAccepts(issuers []string) bool {
	for _, want := range strings.FieldsFunc(s.HeaderAuthority, func(r rune) bool { return r == ';' || r == ',' }) {
		want = strings.TrimSpace(want)
		for _, got := range issuers {
			if want != "" && strings.EqualFold(want, strings.TrimSpace(got)) {
				return true
			}
		}
	}
	return false
}

// Scope is a permission carried by a token.
type Scope string

// The scopes. A write scope implies the read scope of the same resource.
const (
	ScopeArtifactsRead  Scope = "artifacts:read"
	ScopeArtifactsWrite Scope = "artifacts:write"
	ScopeDevicesRead    Scope = "devices:read"
	ScopeDevicesWrite   Scope = "devices:write"
	ScopeRolloutsRead   Scope = "rollouts:read"
	ScopeRolloutsWrite  Scope = "rollouts:write"
	ScopeTokensWrite    Scope = "tokens:write"
	ScopeTenantsWrite   Scope = "tenants:write"
	// ScopeDevicesTokens reads device tokens back (hawkBit's
	// READ_TARGET_SECURITY_TOKEN); devices:read never shows them.
	ScopeDevicesTokens Scope = "devices:tokens"
	// ScopeNodesWrite sets where push updates go (a device's address) and
	// rotates the tokens the server sends there.
	ScopeNodesWrite Scope = "nodes:write"
	// ScopeTrustWrite publishes TUF metadata the operator signed offline
	// (flotilla trust init, release sign); it signs nothing itself.
	ScopeTrustWrite Scope = "trust:write"
	ScopeAdmin      Scope = "admin"
	// ScopeGateway authenticates DDI devices of the tenant (hawkBit's
	// GatewayToken); it grants nothing on the management API.
	ScopeGateway Scope = "gateway"
)

// AllScopes lists every known scope.
var AllScopes = []Scope{
	ScopeArtifactsRead, ScopeArtifactsWrite, ScopeDevicesRead, ScopeDevicesWrite,
	ScopeRolloutsRead, ScopeRolloutsWrite, ScopeTokensWrite, ScopeTenantsWrite,
	ScopeDevicesTokens, ScopeNodesWrite, ScopeTrustWrite, ScopeAdmin, ScopeGateway,
}

// ParseScopes validates a list of scope names.
func ParseScopes(names []string) ([]Scope, error) {
	if len(names) == 0 {
		return nil, Errorf(EInvalid, "scopes must not be empty; known scopes: %s", scopeList())
	}
	out := make([]Scope, 0, len(names))
	for _, n := range names {
		s := Scope(n)
		if !slices.Contains(AllScopes, s) {
			return nil, Errorf(EInvalid, "unknown scope %q; known scopes: %s", n, scopeList())
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func scopeList() string {
	parts := make([]string, len(AllScopes))
	for i, s := range AllScopes {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Token is an API credential. Only a hash of its secret is stored.
type Token struct {
	ID        string
	Tenant    string
	Name      string
	Hash      string
	Scopes    []Scope
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// Active reports whether the token may be used at now.
func (t Token) Active(now time.Time) bool {
	if t.RevokedAt != nil {
		return false
	}
	return t.ExpiresAt == nil || now.Before(*t.ExpiresAt)
}

// Has reports whether the token grants scope s. admin grants everything in
// its tenant except gateway, which is only ever explicit; a write scope grants
// the matching read scope.
func (t Token) Has(s Scope) bool {
	for _, have := range t.Scopes {
		if have == s {
			return true
		}
		if have == ScopeAdmin && s != ScopeGateway {
			return true
		}
		if strings.HasSuffix(string(have), ":write") && strings.HasSuffix(string(s), ":read") &&
			strings.TrimSuffix(string(have), ":write") == strings.TrimSuffix(string(s), ":read") {
			return true
		}
	}
	return false
}

// SuperAdmin reports whether the token may act on every tenant: the admin
// scope in the default tenant.
func (t Token) SuperAdmin() bool {
	return t.Tenant == DefaultTenant && slices.Contains(t.Scopes, ScopeAdmin)
}
