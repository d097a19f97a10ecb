package core

import (
	"context"
	"strings"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
)

// AuthorizeRepository checks that a request may read a tenant's TUF
// repository. The metadata is signed, so reading it gives nothing away to
// write with, but it lists the tenant's releases: it is for the tenant's
// own devices (a device or gateway token, a client certificate, or nothing
// where the tenant allows anonymous devices), its push nodes (a capability
// handed out with each update) and its operators (artifacts:read).
func (c *Core) AuthorizeRepository(ctx context.Context, tenant, authorization string, cert *CertIdentity) error {
	tenant = strings.ToLower(tenant)
	now := c.Now()
	key := "tuf\x00" + tenant + "\x00" + HashSecret(authorization)
	if cert != nil {
		key += "\x00" + cert.CN + "\x00" + strings.Join(cert.Issuers, ";")
	}
	if _, ok := c.deviceAuth.get(key, now); ok {
		return nil
	}
	if err := c.authorizeRepository(ctx, tenant, authorization, cert); err != nil {
		return err
	}
	c.deviceAuth.put(key, DeviceIdentity{Tenant: tenant}, now, now.Add(authCacheTTL))
	return nil
}

func (c *Core) authorizeRepository(ctx context.Context, tenant, authorization string, cert *CertIdentity) error {
	deny := flotilla.Errorf(flotilla.EUnauthorized, "reading tenant %s's TUF repository takes a credential of the tenant: "+
		"'Authorization: TargetToken <device token>', 'GatewayToken <token>', or 'Bearer <management token with artifacts:read>'", tenant)
	if cert != nil {
		if _, err := c.AuthenticateDevice(ctx, tenant, cert.CN, "", cert, false); err == nil {
			return nil
		}
	}
	scheme, secret := ParseDeviceAuthorization(authorization)
	switch {
	case strings.EqualFold(scheme, "TargetToken") && secret != "":
		d, err := c.Store.DeviceByTokenHash(ctx, HashSecret(secret))
		if err != nil || d.Tenant != tenant {
			if err != nil && !flotilla.IsCode(err, flotilla.ENotFound) {
				return err
			}
			return deny
		}
		return nil
	case strings.EqualFold(scheme, "GatewayToken") && secret != "":
		tok, err := c.Store.TokenByHash(ctx, HashSecret(secret))
		if err != nil || tok.Tenant != tenant || !tok.Active(c.Now()) || !tok.Has(flotilla.ScopeGateway) {
			if err != nil && !flotilla.IsCode(err, flotilla.ENotFound) {
				return err
			}
			return deny
		}
		return nil
	case strings.EqualFold(scheme, "Bearer") && secret != "":
		if c.Signatures != nil && c.Signatures.CheckCapability(tenant, secret) {
			return nil
		}
		p, err := c.Authenticate(ctx, secret)
		if err != nil {
			return deny
		}
		if _, err := p.TenantFor(tenant); err != nil {
			return deny
		}
		return p.Require(flotilla.ScopeArtifactsRead)
	case authorization == "":
		t, err := c.Store.GetTenant(ctx, tenant)
		if err == nil && t.AnonymousDDI {
			return nil
		}
	}
	return deny
}

// ErrNoRepository: the server runs without TUF repositories.
var errNoRepository = flotilla.Errorf(flotilla.ENotFound, "this server keeps no TUF repositories")

// TrustStatus is the tenant's repository as the operator sees it; the
// first call makes the tenant's online keys.
func (c *Core) TrustStatus(ctx context.Context, p Principal, tenant string) (tufrepo.Status, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return tufrepo.Status{}, err
	}
	if err := p.Require(flotilla.ScopeArtifactsRead); err != nil {
		return tufrepo.Status{}, err
	}
	if c.Signatures == nil {
		return tufrepo.Status{}, errNoRepository
	}
	if _, err := c.Store.GetTenant(ctx, tenant); err != nil {
		return tufrepo.Status{}, err
	}
	return c.Signatures.Status(ctx, tenant)
}

// PublishTrust stores root and/or targets metadata the operator signed.
func (c *Core) PublishTrust(ctx context.Context, p Principal, tenant string, root, targets []byte) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeTrustWrite); err != nil {
		return err
	}
	if c.Signatures == nil {
		return errNoRepository
	}
	if _, err := c.Store.GetTenant(ctx, tenant); err != nil {
		return err
	}
	if err := c.Signatures.Publish(ctx, tenant, root, targets); err != nil {
		return err
	}
	// What devices are told of a release may have changed.
	c.InvalidateDevice(tenant, "")
	return nil
}

// TrustFile is a metadata file of the tenant's repository, for the CLI.
func (c *Core) TrustFile(ctx context.Context, p Principal, tenant, name string) ([]byte, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeArtifactsRead); err != nil {
		return nil, err
	}
	if c.Signatures == nil {
		return nil, errNoRepository
	}
	return c.Signatures.File(ctx, tenant, name)
}
