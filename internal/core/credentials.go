package core

import (
	"context"
	"fmt"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// Device and node tokens are stored twice: a hash to authenticate with, and
// a copy sealed with the server's key (package secret) — for holders of
// devices:tokens (hawkBit's READ_TARGET_SECURITY_TOKEN), and for the server
// itself, which sends each push node its own token. The plain secret is
// shown once, when it is created or rotated.

func deviceTokenContext(tenant, id string) string { return "device-token/" + tenant + "/" + id }
func nodeTokenContext(tenant, id string) string   { return "node-token/" + tenant + "/" + id }

// newDeviceToken returns a fresh device token's hash and sealed copy, and
// the token.
func (c *Core) newDeviceToken(tenant, id string) (hash, sealed, plain string) {
	plain = NewSecret("fdt_")
	return HashSecret(plain), c.Config.Secrets.Seal(plain, deviceTokenContext(tenant, id)), plain
}

// newNodeToken returns a fresh node token's sealed copy and the token.
func (c *Core) newNodeToken(tenant, id string) (sealed, plain string) {
	plain = NewSecret("fnt_")
	return c.Config.Secrets.Seal(plain, nodeTokenContext(tenant, id)), plain
}

// DeviceToken returns d's DDI token for a caller holding devices:tokens,
// and "" for anyone else or when none is kept.
func (c *Core) DeviceToken(p Principal, d flotilla.Device) string {
	if !p.Token.Has(flotilla.ScopeDevicesTokens) {
		return ""
	}
	return c.DeviceSecret(d)
}

// DeviceSecret is a device's DDI token, for callers entitled to it and the
// server's own messages to the device (DMF's targetSecurityToken); "" when
// none is kept.
func (c *Core) DeviceSecret(d flotilla.Device) string {
	if d.TokenSealed == "" {
		return ""
	}
	plain, err := c.Config.Secrets.Open(d.TokenSealed, deviceTokenContext(d.Tenant, d.ID))
	if err != nil {
		c.Log.Error("a sealed device token does not open; was the secret key changed?", "device", d.ID, "err", err)
		return ""
	}
	return plain
}

// NodeToken returns the token the server sends to push node d; "" when it
// has none.
func (c *Core) NodeToken(d flotilla.Device) (string, error) {
	if d.NodeTokenSealed == "" {
		return "", nil
	}
	plain, err := c.Config.Secrets.Open(d.NodeTokenSealed, nodeTokenContext(d.Tenant, d.ID))
	if err != nil {
		return "", fmt.Errorf("node token of %s does not open (was the secret key changed?): %w", d.ID, err)
	}
	return plain, nil
}

// RotateDeviceToken gives a device a new DDI token and returns it; the old
// one stops working at once, on every replica.
func (c *Core) RotateDeviceToken(ctx context.Context, p Principal, tenant, id string) (flotilla.Device, string, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Device{}, "", err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Device{}, "", err
	}
	if _, err := c.Store.GetDevice(ctx, tenant, id); err != nil {
		return flotilla.Device{}, "", err
	}
	hash, sealed, plain := c.newDeviceToken(tenant, id)
	d, err := c.Store.UpdateDevice(ctx, tenant, id, flotilla.DevicePatch{TokenHash: &hash, TokenSealed: &sealed}, c.Now())
	if err != nil {
		return flotilla.Device{}, "", err
	}
	c.ForgetDeviceAuth()
	c.Log.Info("device token rotated", "tenant", tenant, "device", id, "by", p.Token.ID)
	return d, plain, nil
}

// RotateNodeToken gives a push node a new token and returns it: configure
// it on the node (flotilla agent --listen-token) before the next update.
func (c *Core) RotateNodeToken(ctx context.Context, p Principal, tenant, id string) (flotilla.Device, string, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Device{}, "", err
	}
	if err := p.Require(flotilla.ScopeNodesWrite); err != nil {
		return flotilla.Device{}, "", err
	}
	if _, err := c.Store.GetDevice(ctx, tenant, id); err != nil {
		return flotilla.Device{}, "", err
	}
	sealed, plain := c.newNodeToken(tenant, id)
	d, err := c.Store.UpdateDevice(ctx, tenant, id, flotilla.DevicePatch{NodeTokenSealed: &sealed}, c.Now())
	if err != nil {
		return flotilla.Device{}, "", err
	}
	c.Log.Info("node token rotated", "tenant", tenant, "device", id, "by", p.Token.ID)
	return d, plain, nil
}

// Settings that guard the secrets.
const (
	settingKeyID        = "secret_key_id"
	settingTokensSealed = "device_tokens_sealed"
)

// CheckSecrets makes sure the secrets in the database were sealed with this
// server's key (the first start records which), and seals device tokens
// that earlier versions kept in plain text.
func (c *Core) CheckSecrets(ctx context.Context) error {
	id := c.Config.Secrets.ID()
	have, err := c.Store.InitSetting(ctx, settingKeyID, id)
	if err != nil {
		return fmt.Errorf("check secret key: %w", err)
	}
	if have != id {
		return fmt.Errorf("the database's secrets were sealed with another key (id %s, this server's is %s): give every replica the same FLOTILLA_SECRET_KEY, or restore the data directory's secret.key", have, id)
	}
	if _, err := c.Store.Setting(ctx, settingTokensSealed); err == nil {
		return nil
	} else if !flotilla.IsCode(err, flotilla.ENotFound) {
		return err
	}
	tenants, err := c.Store.ListTenants(ctx)
	if err != nil {
		return err
	}
	sealed := 0
	for _, t := range tenants {
		for after := ""; ; {
			page, err := c.Store.ListDevices(ctx, t.Name, store.DeviceQuery{AfterID: after, Limit: 1000})
			if err != nil {
				return err
			}
			for _, d := range page {
				if d.TokenSealed == "" || isSealed(d.TokenSealed) {
					continue
				}
				s := c.Config.Secrets.Seal(d.TokenSealed, deviceTokenContext(d.Tenant, d.ID))
				if _, err := c.Store.UpdateDevice(ctx, d.Tenant, d.ID, flotilla.DevicePatch{TokenSealed: &s}, d.UpdatedAt); err != nil {
					return err
				}
				sealed++
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	if sealed > 0 {
		c.Log.Info("sealed device tokens stored in plain text by an earlier version", "devices", sealed)
	}
	return c.Store.PutSetting(ctx, settingTokensSealed, "1")
}

func isSealed(v string) bool { return len(v) > 3 && v[:3] == "v1:" }

// SetDeviceToken makes token the device's DDI token (hawkBit lets a
// target's securityToken be set); the old one stops working at once.
func (c *Core) SetDeviceToken(ctx context.Context, p Principal, tenant, id, token string) (flotilla.Device, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Device{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Device{}, err
	}
	if len(token) < 16 || len(token) > 512 {
		return flotilla.Device{}, flotilla.Errorf(flotilla.EInvalid, "a device token must be 16 to 512 characters")
	}
	hash, sealed := HashSecret(token), c.Config.Secrets.Seal(token, deviceTokenContext(tenant, id))
	if other, err := c.Store.DeviceByTokenHash(ctx, hash); err == nil && (other.Tenant != tenant || other.ID != id) {
		return flotilla.Device{}, flotilla.Errorf(flotilla.EConflict, "that security token is already another device's; choose another")
	}
	d, err := c.Store.UpdateDevice(ctx, tenant, id, flotilla.DevicePatch{TokenHash: &hash, TokenSealed: &sealed}, c.Now())
	if err != nil {
		return d, err
	}
	c.ForgetDeviceAuth()
	return d, nil
}
