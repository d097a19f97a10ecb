package core

import (
	"context"
	"crypto/subtle"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// Principal is an authenticated API caller.
type Principal struct {
	Token flotilla.Token
}

// Tenant is the caller's own tenant.
func (p Principal) Tenant() string { return p.Token.Tenant }

// Require returns EForbidden unless the caller holds scope s.
func (p Principal) Require(s flotilla.Scope) error {
	if !p.Token.Has(s) {
		return flotilla.Errorf(flotilla.EForbidden, "this token lacks the %q scope", s)
	}
	return nil
}

// TenantFor resolves the tenant a request addresses: the caller's own when
// name is empty. Only a super admin reaches other tenants; for anyone else
// another tenant does not exist (ENotFound), so nothing leaks.
func (p Principal) TenantFor(name string) (string, error) {
	if name == "" || name == p.Token.Tenant {
		return p.Token.Tenant, nil
	}
	if p.Token.SuperAdmin() {
		return name, nil
	}
	return "", flotilla.Errorf(flotilla.ENotFound, "tenant %q not found", name)
}

// mayDelegate reports whether the caller may hand out (or take away) a
// token with scope s: only scopes it holds itself; gateway, which admin
// does not imply, for an admin.
func (p Principal) mayDelegate(s flotilla.Scope) bool {
	return p.Token.Has(s) || s == flotilla.ScopeGateway && p.Token.Has(flotilla.ScopeAdmin)
}

// Authenticate resolves a bearer secret to a principal.
func (c *Core) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if secret == "" {
		return Principal{}, flotilla.Errorf(flotilla.EUnauthorized, "missing bearer token: send 'Authorization: Bearer <token>'")
	}
	tok, err := c.Store.TokenByHash(ctx, HashSecret(secret))
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return Principal{}, flotilla.Errorf(flotilla.EUnauthorized, "invalid token")
	}
	if err != nil {
		return Principal{}, err
	}
	if !tok.Active(c.Now()) {
		return Principal{}, flotilla.Errorf(flotilla.EUnauthorized, "token expired or revoked")
	}
	return Principal{Token: tok}, nil
}

// SecretsEqual compares secrets in constant time.
func SecretsEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

const bootstrapTokenName = "bootstrap-admin"

// Bootstrap makes sure the default tenant and an admin token exist. With a
// non-empty adminSecret that secret becomes the admin token (and replaces a
// previous bootstrap token); otherwise a token is generated on first start,
// written to tokenFile with mode 0600 and returned so it can be shown once.
// It returns "" when nothing new was generated.
func (c *Core) Bootstrap(ctx context.Context, adminSecret, tokenFile string) (string, error) {
	now := c.Now()
	if err := c.Store.CreateTenant(ctx, flotilla.Tenant{Name: flotilla.DefaultTenant, CreatedAt: now}); err != nil && !flotilla.IsCode(err, flotilla.EConflict) {
		return "", fmt.Errorf("bootstrap: create default tenant: %w", err)
	}
	toks, err := c.Store.ListTokens(ctx, flotilla.DefaultTenant)
	if err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	var boot []flotilla.Token
	for _, t := range toks {
		if t.Name == bootstrapTokenName && t.Active(now) {
			boot = append(boot, t)
		}
	}
	generated := ""
	if adminSecret == "" {
		if len(boot) > 0 {
			return "", nil
		}
		adminSecret = NewSecret("flt_")
		generated = adminSecret
	}
	hash := HashSecret(adminSecret)
	for _, t := range boot {
		if t.Hash != hash {
			if err := c.Store.RevokeToken(ctx, t.Tenant, t.ID, now); err != nil {
				return "", fmt.Errorf("bootstrap: revoke old admin token: %w", err)
			}
		}
	}
	// The operator's secret is the admin token, whatever happened to it:
	// revoked or expired, it is made valid again.
	existing, err := c.Store.TokenByHash(ctx, hash)
	switch {
	case err == nil && existing.Tenant == flotilla.DefaultTenant && existing.Name == bootstrapTokenName:
		if !existing.Active(now) {
			if err := c.Store.ReinstateToken(ctx, hash); err != nil {
				return "", fmt.Errorf("bootstrap: reinstate admin token: %w", err)
			}
			c.Log.Warn("the bootstrap admin token had been revoked or had expired; FLOTILLA_ADMIN_TOKEN made it valid again", "token", existing.ID)
		}
	case err == nil:
		return "", fmt.Errorf("bootstrap: the admin secret is already the secret of token %s; choose another FLOTILLA_ADMIN_TOKEN", existing.ID)
	case flotilla.IsCode(err, flotilla.ENotFound):
		err := c.Store.CreateToken(ctx, flotilla.Token{ID: NewID("tok_"), Tenant: flotilla.DefaultTenant, Name: bootstrapTokenName,
			Hash: hash, Scopes: []flotilla.Scope{flotilla.ScopeAdmin}, CreatedAt: now})
		// A conflict is a replica starting alongside that created it first.
		if err != nil && !flotilla.IsCode(err, flotilla.EConflict) {
			return "", fmt.Errorf("bootstrap: create admin token: %w", err)
		}
	default:
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	if generated != "" && tokenFile != "" {
		if err := os.MkdirAll(filepath.Dir(tokenFile), 0o750); err != nil {
			return "", fmt.Errorf("bootstrap: %w", err)
		}
		if err := os.WriteFile(tokenFile, []byte(generated+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("bootstrap: write admin token: %w", err)
		}
	}
	return generated, nil
}

const bootstrapGatewayName = "bootstrap-gateway"

// BootstrapGateway makes secret a gateway token of the default tenant, so
// that devices and simulators can register themselves from the first start
// (hawkBit's "gateway security token"). It replaces a previous bootstrap
// gateway token; an empty secret changes nothing.
func (c *Core) BootstrapGateway(ctx context.Context, secret string) error {
	if secret == "" {
		return nil
	}
	if len(secret) < 16 {
		return fmt.Errorf("bootstrap: the gateway token must be at least 16 characters")
	}
	now := c.Now()
	toks, err := c.Store.ListTokens(ctx, flotilla.DefaultTenant)
	if err != nil {
		return fmt.Errorf("bootstrap gateway token: %w", err)
	}
	hash := HashSecret(secret)
	have := false
	for _, t := range toks {
		if t.Name != bootstrapGatewayName || !t.Active(now) {
			continue
		}
		if t.Hash == hash {
			have = true
		} else if err := c.Store.RevokeToken(ctx, t.Tenant, t.ID, now); err != nil {
			return fmt.Errorf("bootstrap: revoke old gateway token: %w", err)
		}
	}
	if have {
		return nil
	}
	err = c.Store.CreateToken(ctx, flotilla.Token{ID: NewID("tok_"), Tenant: flotilla.DefaultTenant, Name: bootstrapGatewayName,
		Hash: hash, Scopes: []flotilla.Scope{flotilla.ScopeGateway}, CreatedAt: now})
	if err != nil && !flotilla.IsCode(err, flotilla.EConflict) {
		return fmt.Errorf("bootstrap: create gateway token: %w", err)
	}
	return nil
}

// CreateTenant creates a tenant. It needs tenants:write in the default
// tenant: tenants are created by the operators of the installation.
func (c *Core) CreateTenant(ctx context.Context, p Principal, name string) (flotilla.Tenant, error) {
	if err := p.Require(flotilla.ScopeTenantsWrite); err != nil {
		return flotilla.Tenant{}, err
	}
	if p.Tenant() != flotilla.DefaultTenant {
		return flotilla.Tenant{}, flotilla.Errorf(flotilla.EForbidden, "only tokens of the %q tenant may create tenants", flotilla.DefaultTenant)
	}
	if err := flotilla.ValidateTenantName(name); err != nil {
		return flotilla.Tenant{}, err
	}
	t := flotilla.Tenant{Name: name, CreatedAt: c.Now()}
	return t, c.Store.CreateTenant(ctx, t)
}

// ListTenants lists every tenant for the default tenant's operators and the
// caller's own tenant for anyone else.
func (c *Core) ListTenants(ctx context.Context, p Principal) ([]flotilla.Tenant, error) {
	if p.Tenant() == flotilla.DefaultTenant && p.Token.Has(flotilla.ScopeTenantsWrite) {
		return c.Store.ListTenants(ctx)
	}
	t, err := c.Store.GetTenant(ctx, p.Tenant())
	if err != nil {
		return nil, err
	}
	return []flotilla.Tenant{t}, nil
}

// GetTenant returns a tenant the caller can see.
func (c *Core) GetTenant(ctx context.Context, p Principal, name string) (flotilla.Tenant, error) {
	name, err := p.TenantFor(name)
	if err != nil {
		return flotilla.Tenant{}, err
	}
	return c.Store.GetTenant(ctx, name)
}

// TenantPatch changes tenant settings.
type TenantPatch struct {
	AnonymousDDI *bool
	Settings     *flotilla.TenantSettings
}

// UpdateTenant changes a tenant's settings; tenants:write in that tenant.
func (c *Core) UpdateTenant(ctx context.Context, p Principal, name string, patch TenantPatch) (flotilla.Tenant, error) {
	name, err := p.TenantFor(name)
	if err != nil {
		return flotilla.Tenant{}, err
	}
	if err := p.Require(flotilla.ScopeTenantsWrite); err != nil {
		return flotilla.Tenant{}, err
	}
	if patch.AnonymousDDI != nil {
		if err := c.Store.SetTenantAnonymousDDI(ctx, name, *patch.AnonymousDDI); err != nil {
			return flotilla.Tenant{}, err
		}
		// Cached device authentications may rest on the old setting.
		c.ForgetDeviceAuth()
	}
	if patch.Settings != nil {
		cur, err := c.Store.GetTenant(ctx, name)
		if err != nil {
			return flotilla.Tenant{}, err
		}
		next := *patch.Settings
		// The gateway key is set through SetGatewayKey only.
		next.GatewayKeyTokenID, next.GatewayKeySealed = cur.Settings.GatewayKeyTokenID, cur.Settings.GatewayKeySealed
		if err := validateSettings(next); err != nil {
			return flotilla.Tenant{}, err
		}
		if err := c.Store.SetTenantSettings(ctx, name, next); err != nil {
			return flotilla.Tenant{}, err
		}
		c.ForgetDeviceAuth()
		// Poll answers carry the polling time.
		c.InvalidateDevice(name, "")
	}
	return c.Store.GetTenant(ctx, name)
}

// NewToken is a request to create a token.
type NewToken struct {
	Tenant    string
	Name      string
	Scopes    []string
	ExpiresAt *time.Time
}

// CreateToken issues a token and returns it with its secret, which is never
// shown again. A caller can grant only scopes it holds itself.
func (c *Core) CreateToken(ctx context.Context, p Principal, req NewToken) (flotilla.Token, string, error) {
	tenant, err := p.TenantFor(req.Tenant)
	if err != nil {
		return flotilla.Token{}, "", err
	}
	if err := p.Require(flotilla.ScopeTokensWrite); err != nil {
		return flotilla.Token{}, "", err
	}
	scopes, err := flotilla.ParseScopes(req.Scopes)
	if err != nil {
		return flotilla.Token{}, "", err
	}
	for _, s := range scopes {
		if !p.mayDelegate(s) {
			return flotilla.Token{}, "", flotilla.Errorf(flotilla.EForbidden, "cannot grant scope %q that this token does not hold", s)
		}
	}
	if _, err := c.Store.GetTenant(ctx, tenant); err != nil {
		return flotilla.Token{}, "", err
	}
	now := c.Now()
	if req.ExpiresAt != nil && !req.ExpiresAt.After(now) {
		return flotilla.Token{}, "", flotilla.Errorf(flotilla.EInvalid, "expires_at must be in the future")
	}
	if len(req.Name) > 128 {
		return flotilla.Token{}, "", flotilla.Errorf(flotilla.EInvalid, "token name is longer than 128 characters")
	}
	if req.Name == bootstrapTokenName || req.Name == bootstrapGatewayName {
		return flotilla.Token{}, "", flotilla.Errorf(flotilla.EInvalid, "token name %q is reserved for the server's own tokens", req.Name)
	}
	secret := NewSecret("flt_")
	t := flotilla.Token{ID: NewID("tok_"), Tenant: tenant, Name: req.Name, Hash: HashSecret(secret), Scopes: scopes, CreatedAt: now, ExpiresAt: req.ExpiresAt}
	if err := c.Store.CreateToken(ctx, t); err != nil {
		return flotilla.Token{}, "", err
	}
	return t, secret, nil
}

// ListTokens lists the tokens of a tenant the caller can see.
func (c *Core) ListTokens(ctx context.Context, p Principal, tenant string) ([]flotilla.Token, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeTokensWrite); err != nil {
		return nil, err
	}
	return c.Store.ListTokens(ctx, tenant)
}

// RevokeToken revokes a token of the caller's tenant (any tenant for a super
// admin). Privilege never grows by delegation: a caller may revoke only a
// token whose every scope it holds itself, and the bootstrap admin token
// only the operator replaces (FLOTILLA_ADMIN_TOKEN).
func (c *Core) RevokeToken(ctx context.Context, p Principal, id string) error {
	if err := p.Require(flotilla.ScopeTokensWrite); err != nil {
		return err
	}
	tenant := p.Tenant()
	if p.Token.SuperAdmin() {
		tenant = ""
	}
	t, err := c.Store.GetToken(ctx, tenant, id)
	if err != nil {
		return err
	}
	if t.Tenant == flotilla.DefaultTenant && t.Name == bootstrapTokenName {
		return flotilla.Errorf(flotilla.EForbidden, "the bootstrap admin token cannot be revoked through the API; restart the server with a new FLOTILLA_ADMIN_TOKEN to replace it")
	}
	for _, s := range t.Scopes {
		if !p.mayDelegate(s) {
			return flotilla.Errorf(flotilla.EForbidden, "cannot revoke a token with scope %q that this token does not hold", s)
		}
	}
	if err := c.Store.RevokeToken(ctx, t.Tenant, id, c.Now()); err != nil {
		return err
	}
	c.ForgetDeviceAuth() // a revoked gateway token must stop working at once
	return nil
}
