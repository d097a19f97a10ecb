package core

import (
	"context"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// validateSettings checks a tenant's polling settings.
func validateSettings(s flotilla.TenantSettings) error {
	for name, d := range map[string]flotilla.Duration{"polling_time": s.PollingTime, "min_polling_time": s.MinPollingTime, "polling_overdue_time": s.PollingOverdueTime} {
		if d < 0 || time.Duration(d) > 24*time.Hour {
			return flotilla.Errorf(flotilla.EInvalid, "%s must be between 0 and 24h, got %s", name, time.Duration(d))
		}
	}
	if s.PollingTime > 0 && s.MinPollingTime > 0 && s.PollingTime < s.MinPollingTime {
		return flotilla.Errorf(flotilla.EInvalid, "polling_time %s is below min_polling_time %s", time.Duration(s.PollingTime), time.Duration(s.MinPollingTime))
	}
	if s.MaintenanceWindowPollCount < 0 || s.MaintenanceWindowPollCount > 1000 {
		return flotilla.Errorf(flotilla.EInvalid, "maintenance_window_poll_count must be between 0 and 1000")
	}
	return nil
}

// PollInterval is the DDI polling interval the tenant's devices are told.
func (c *Core) PollInterval(s flotilla.TenantSettings) time.Duration {
	if s.PollingTime > 0 {
		return time.Duration(s.PollingTime)
	}
	return c.Config.PollInterval
}

// SetGatewayKey makes key a gateway token of the tenant — hawkBit's
// authentication.gatewaytoken.key — replacing the one set before (it stops
// working at once); "" removes it. The server keeps the key's hash and a
// sealed copy, as for device tokens.
func (c *Core) SetGatewayKey(ctx context.Context, p Principal, tenant, key string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeTenantsWrite); err != nil {
		return err
	}
	if !p.mayDelegate(flotilla.ScopeGateway) {
		return flotilla.Errorf(flotilla.EForbidden, "setting a gateway key needs a token that may grant the gateway scope")
	}
	if key != "" && (len(key) < 16 || len(key) > 512) {
		return flotilla.Errorf(flotilla.EInvalid, "a gateway key must be 16 to 512 characters")
	}
	t, err := c.Store.GetTenant(ctx, tenant)
	if err != nil {
		return err
	}
	s := t.Settings
	if s.GatewayKeyTokenID != "" {
		if err := c.Store.RevokeToken(ctx, tenant, s.GatewayKeyTokenID, c.Now()); err != nil && !flotilla.IsCode(err, flotilla.ENotFound) {
			return err
		}
	}
	s.GatewayKeyTokenID, s.GatewayKeySealed = "", ""
	if key != "" {
		tok := flotilla.Token{ID: NewID("tok-"), Tenant: tenant, Name: "gateway key (authentication.gatewaytoken.key)", Hash: HashSecret(key),
			Scopes: []flotilla.Scope{flotilla.ScopeGateway}, CreatedAt: c.Now()}
		if err := c.Store.CreateToken(ctx, tok); err != nil {
			if flotilla.IsCode(err, flotilla.EConflict) {
				return flotilla.Errorf(flotilla.EConflict, "that key is already a token of this server; choose another")
			}
			return err
		}
		s.GatewayKeyTokenID, s.GatewayKeySealed = tok.ID, c.Config.Secrets.Seal(key, "gateway-key/"+tenant)
	}
	if err := c.Store.SetTenantSettings(ctx, tenant, s); err != nil {
		return err
	}
	c.ForgetDeviceAuth()
	return nil
}

// GatewayKey is the tenant's gateway key, for administrators.
func (c *Core) GatewayKey(ctx context.Context, p Principal, tenant string) (string, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return "", err
	}
	if err := p.Require(flotilla.ScopeTenantsWrite); err != nil {
		return "", err
	}
	t, err := c.Store.GetTenant(ctx, tenant)
	if err != nil || t.Settings.GatewayKeySealed == "" {
		return "", err
	}
	return c.Config.Secrets.Open(t.Settings.GatewayKeySealed, "gateway-key/"+tenant)
}
