package core

import (
	"context"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/events"
)

// DeviceIdentity is an authenticated DDI caller.
type DeviceIdentity struct {
	Tenant   string
	DeviceID string
	// Via says how it authenticated: target, gateway or anonymous.
	Via string
}

// How a device authenticated.
const (
	viaTarget      = "target"
	viaGateway     = "gateway"
	viaAnonymous   = "anonymous"
	viaCertificate = "certificate"
)

// CertIdentity is a client certificate a transport verified: directly,
// in the server's own TLS handshake (--client-ca), or through the headers
// of a trusted reverse proxy that terminated TLS (hawkBit's
// X-Ssl-Client-Cn and X-Ssl-Issuer-Hash-N).
type CertIdentity struct {
	// CN is the certificate's subject common name: the device id.
	CN string
	// Direct marks a certificate this server verified itself.
	Direct bool
	// Issuers are the issuer hashes a proxy passed on; one must be in
	// the tenant's HeaderAuthority.
	Issuers []string
}

// authCacheTTL is a backstop: revocations and deletions flush the cache at
// once, here and (over the cluster link) on other replicas; the TTL only
// bounds how long one would keep working on a replica that missed that
// message. It is longer than typical poll intervals so that a polling fleet
// authenticates from memory.
const authCacheTTL = 10 * time.Minute

// maxCachedAuths bounds the authentications kept (about 60 MiB); beyond
// it the cache starts over, and devices authenticate against the database
// once more.
const maxCachedAuths = 1 << 18

type authEntry struct {
	id      DeviceIdentity
	expires time.Time
}

// deviceAuth caches successful authentications so that a poll does not
// read the database.
type deviceAuth struct {
	mu      sync.RWMutex
	entries map[string]authEntry
}

func (a *deviceAuth) get(key string, now time.Time) (DeviceIdentity, bool) {
	a.mu.RLock()
	e, ok := a.entries[key]
	a.mu.RUnlock()
	if !ok || now.After(e.expires) {
		return DeviceIdentity{}, false
	}
	return e.id, true
}

// put caches id until expires, at most authCacheTTL from now.
func (a *deviceAuth) put(key string, id DeviceIdentity, now, expires time.Time) {
	if limit := now.Add(authCacheTTL); expires.IsZero() || expires.After(limit) {
		expires = limit
	}
	a.mu.Lock()
	if a.entries == nil || len(a.entries) > maxCachedAuths {
		a.entries = map[string]authEntry{}
	}
	a.entries[key] = authEntry{id: id, expires: expires}
	a.mu.Unlock()
}

func (a *deviceAuth) flush() {
	a.mu.Lock()
	a.entries = nil
	a.mu.Unlock()
}

// AuthenticateDevice checks a DDI request's credentials: a client
// certificate whose common name is the device id (cert, when the transport
// verified one), else the Authorization header. A device that polls for
// the first time with the tenant's gateway token (or anonymously, where the
// tenant allows it) is registered when register is true.
func (c *Core) AuthenticateDevice(ctx context.Context, tenant, deviceID, authorization string, cert *CertIdentity, register bool) (DeviceIdentity, error) {
	id, _, err := c.authenticate(ctx, tenant, deviceID, authorization, cert, register, false)
	return id, err
}

// AuthenticatePoll is AuthenticateDevice for a poll whose answer is not
// cached. Where authentication reads the device (its token, or whether it
// exists), it reads the poll's view with it (readDevice), which comes back
// (nil otherwise: read it with DeviceView). A cold poll then reads the
// device once, not once to authenticate and once for its answer.
func (c *Core) AuthenticatePoll(ctx context.Context, tenant, deviceID, authorization string, cert *CertIdentity) (DeviceIdentity, *DeviceView, error) {
	return c.authenticate(ctx, tenant, deviceID, authorization, cert, true, true)
}

func (c *Core) authenticate(ctx context.Context, tenant, deviceID, authorization string, cert *CertIdentity, register, wantView bool) (DeviceIdentity, *DeviceView, error) {
	tenant = strings.ToLower(tenant)
	now := c.Now()
	key := tenant + "\x00" + deviceID + "\x00" + HashSecret(authorization)
	if cert != nil && cert.CN == deviceID {
		key += "\x00cert\x00" + strings.Join(cert.Issuers, ";")
		if cert.Direct {
			key += "\x00direct"
		}
		if id, ok := c.deviceAuth.get(key, now); ok {
			return id, nil, nil
		}
		id, view, err := c.certificateAuth(ctx, tenant, deviceID, *cert, wantView)
		if err == nil {
			c.deviceAuth.put(key, id, now, time.Time{})
			return id, view, nil
		}
		if !flotilla.IsCode(err, flotilla.EUnauthorized) {
			return id, nil, err
		}
		// An untrusted certificate falls back to the token, if any.
	}
	if id, ok := c.deviceAuth.get(key, now); ok {
		return id, nil, nil
	}
	var expires time.Time
	id, view, err := c.checkDevice(ctx, tenant, deviceID, authorization, register, wantView, &expires)
	if err != nil {
		return id, nil, err
	}
	c.deviceAuth.put(key, id, now, expires)
	return id, view, nil
}

// ParseDeviceAuthorization splits a DDI Authorization header into its
// scheme (TargetToken, GatewayToken) and secret; both empty for a header
// that is not one.
func ParseDeviceAuthorization(h string) (scheme, secret string) {
	if len(h) > 1024 {
		return "", ""
	}
	scheme, secret, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return "", ""
	}
	return scheme, strings.TrimSpace(secret)
}

// certificateAuth accepts a certificate for a known device: one this server
// verified, or one a trusted proxy vouches for with an issuer the tenant
// accepts.
func (c *Core) certificateAuth(ctx context.Context, tenant, deviceID string, cert CertIdentity, wantView bool) (DeviceIdentity, *DeviceView, error) {
	unauthorized := flotilla.Errorf(flotilla.EUnauthorized, "the client certificate is not accepted for device %q", deviceID)
	t, err := c.cachedTenant(ctx, tenant)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return DeviceIdentity{}, nil, unauthorized
	}
	if err != nil {
		return DeviceIdentity{}, nil, err
	}
	if !cert.Direct && !(t.Settings.HeaderAuth && t.Settings.AuthorityAccepts(cert.Issuers)) {
		return DeviceIdentity{}, nil, unauthorized
	}
	_, view, err := c.readDevice(ctx, tenant, deviceID, t.Settings, wantView)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return DeviceIdentity{}, nil, unauthorized
	} else if err != nil {
		return DeviceIdentity{}, nil, err
	}
	return DeviceIdentity{Tenant: tenant, DeviceID: deviceID, Via: viaCertificate}, view, nil
}

// checkDevice checks credentials against the store; expires is set to
// when they stop being valid (zero: not before they are revoked). With
// wantView, the device's poll view comes back too, read with it (nil for
// a device registered just now).
func (c *Core) checkDevice(ctx context.Context, tenant, deviceID, authorization string, register, wantView bool, expires *time.Time) (DeviceIdentity, *DeviceView, error) {
	unauthorized := flotilla.Errorf(flotilla.EUnauthorized, "send 'Authorization: TargetToken <device token>' or 'GatewayToken <token>'")
	if s, _ := ParseDeviceAuthorization(authorization); s != "" {
		unauthorized = flotilla.Errorf(flotilla.EUnauthorized, "the %s sent is not accepted for device %q in tenant %q: check the token (or rotate it with POST /api/v1/devices/%s/token)", s, deviceID, tenant, deviceID)
	}
	if err := flotilla.ValidateDeviceID(deviceID); err != nil {
		return DeviceIdentity{}, nil, err
	}
	// The cached tenant is as fresh as the authentication cache: setting
	// changes flush both.
	t, err := c.cachedTenant(ctx, tenant)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return DeviceIdentity{}, nil, unauthorized
	}
	if err != nil {
		return DeviceIdentity{}, nil, err
	}
	scheme, secret := ParseDeviceAuthorization(authorization)
	id := DeviceIdentity{Tenant: tenant, DeviceID: deviceID}
	switch {
	case strings.EqualFold(scheme, "TargetToken") && secret != "" && t.Settings.TargetTokenDisabled:
		return DeviceIdentity{}, nil, flotilla.Errorf(flotilla.EUnauthorized, "tenant %q does not accept device tokens (authentication.targettoken.enabled is false)", tenant)
	case strings.EqualFold(scheme, "GatewayToken") && secret != "" && t.Settings.GatewayTokenDisabled:
		return DeviceIdentity{}, nil, flotilla.Errorf(flotilla.EUnauthorized, "tenant %q does not accept gateway tokens (authentication.gatewaytoken.enabled is false)", tenant)
	case strings.EqualFold(scheme, "TargetToken") && secret != "":
		hash, view, err := c.readDevice(ctx, tenant, deviceID, t.Settings, wantView)
		if flotilla.IsCode(err, flotilla.ENotFound) {
			return DeviceIdentity{}, nil, unauthorized
		}
		if err != nil {
			return DeviceIdentity{}, nil, err
		}
		if hash == "" || !SecretsEqual(hash, HashSecret(secret)) {
			return DeviceIdentity{}, nil, unauthorized
		}
		id.Via = viaTarget
		return id, view, nil
	case strings.EqualFold(scheme, "GatewayToken") && secret != "":
		tok, err := c.Store.TokenByHash(ctx, HashSecret(secret))
		if err != nil || tok.Tenant != tenant || !tok.Active(c.Now()) || !tok.Has(flotilla.ScopeGateway) {
			if err != nil && !flotilla.IsCode(err, flotilla.ENotFound) {
				return DeviceIdentity{}, nil, err
			}
			return DeviceIdentity{}, nil, unauthorized
		}
		id.Via = viaGateway
		if tok.ExpiresAt != nil {
			*expires = *tok.ExpiresAt
		}
	case authorization == "" && t.AnonymousDDI:
		id.Via = viaAnonymous
	default:
		return DeviceIdentity{}, nil, unauthorized
	}
	// Gateway and anonymous access may register the device.
	_, view, err := c.readDevice(ctx, tenant, deviceID, t.Settings, wantView)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		if !register {
			return DeviceIdentity{}, nil, flotilla.Errorf(flotilla.ENotFound, "device %q is not registered; it registers itself with its first poll", deviceID)
		}
		if err := c.registerDevice(ctx, tenant, deviceID); err != nil {
			return DeviceIdentity{}, nil, err
		}
	} else if err != nil {
		return DeviceIdentity{}, nil, err
	}
	return id, view, nil
}

func (c *Core) registerDevice(ctx context.Context, tenant, deviceID string) error {
	if err := c.checkRegistration(ctx, tenant); err != nil {
		c.Log.Warn("device registration refused", "tenant", tenant, "device", deviceID, "err", err)
		return err
	}
	now := c.Now()
	d := flotilla.Device{Tenant: tenant, ID: deviceID, Labels: map[string]string{}, Attributes: map[string]string{}, CreatedAt: now, UpdatedAt: now}
	d.TokenHash, d.TokenSealed, _ = c.newDeviceToken(tenant, deviceID)
	err := c.Store.CreateDevice(ctx, d)
	if flotilla.IsCode(err, flotilla.EConflict) {
		return nil // registered concurrently
	}
	if err != nil {
		return err
	}
	c.Log.Info("device registered itself", "tenant", tenant, "device", deviceID)
	c.publishDevice(events.TypeDeviceRegistered, d)
	return nil
}

// ForgetDeviceAuth drops cached authentications, after a token was revoked
// or a device deleted, here and (through the hooks) on other replicas.
func (c *Core) ForgetDeviceAuth() {
	c.deviceAuth.flush()
	c.tenants.flush()
	if h := c.hooks.ForgetAuth; h != nil {
		h()
	}
}

// ForgetDeviceAuthLocal drops this replica's cached authentications only.
func (c *Core) ForgetDeviceAuthLocal() { c.deviceAuth.flush(); c.tenants.flush() }

// deviceDeployment loads a deployment of this device, with its history, or
// ENotFound.
func (c *Core) deviceDeployment(ctx context.Context, id DeviceIdentity, actionID int64) (flotilla.Deployment, error) {
	return c.ownDeployment(ctx, id, actionID, c.Store.GetDeployment)
}

func (c *Core) ownDeployment(ctx context.Context, id DeviceIdentity, actionID int64,
	get func(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error)) (flotilla.Deployment, error) {
	d, err := get(ctx, id.Tenant, actionID)
	if err != nil || d.DeviceID != id.DeviceID {
		return flotilla.Deployment{}, flotilla.Errorf(flotilla.ENotFound, "action %d not found for device %q", actionID, id.DeviceID)
	}
	return d, nil
}

// CancelAction returns a deployment the server asked the device to cancel.
func (c *Core) CancelAction(ctx context.Context, id DeviceIdentity, actionID int64) (flotilla.Deployment, error) {
	d, err := c.deviceDeployment(ctx, id, actionID)
	if err != nil {
		return d, err
	}
	if d.State != flotilla.StateCancelRequested {
		return d, flotilla.Errorf(flotilla.ENotFound, "no cancel is pending for action %d", actionID)
	}
	return d, nil
}

// DeploymentFeedback applies a device's report to its deployment.
func (c *Core) DeploymentFeedback(ctx context.Context, id DeviceIdentity, actionID int64, f flotilla.Feedback) (flotilla.Deployment, error) {
	return c.feedback(ctx, id, actionID, f, false)
}

// CancelFeedback applies a device's answer to a cancel request.
func (c *Core) CancelFeedback(ctx context.Context, id DeviceIdentity, actionID int64, f flotilla.Feedback) (flotilla.Deployment, error) {
	return c.feedback(ctx, id, actionID, f, true)
}

func (c *Core) feedback(ctx context.Context, id DeviceIdentity, actionID int64, f flotilla.Feedback, cancel bool) (flotilla.Deployment, error) {
	d, err := c.Report(ctx, Ref{Tenant: id.Tenant, DeviceID: id.DeviceID, ID: actionID}, Report{Feedback: f, Cancel: cancel})
	if err != nil {
		if flotilla.IsCode(err, flotilla.ENotFound) {
			return d, flotilla.Errorf(flotilla.ENotFound, "action %d not found for device %q", actionID, id.DeviceID)
		}
		if flotilla.IsCode(err, flotilla.EGone) {
			c.replayFinal(ctx, id, actionID, f, cancel)
		}
		return d, err
	}
	return d, nil
}

// replayFinal re-announces a deployment's final state when its device
// repeats the feedback that ended it. A device repeats feedback when it got
// no answer the first time — the replica that committed it may have died
// before telling the others — so watchers might have missed the change.
func (c *Core) replayFinal(ctx context.Context, id DeviceIdentity, actionID int64, f flotilla.Feedback, cancel bool) {
	d, err := c.deviceDeployment(ctx, id, actionID)
	if err != nil || !d.State.Terminal() {
		return
	}
	var want flotilla.DeploymentState
	if cancel {
		want, err = flotilla.NextCancelState(flotilla.StateCancelRequested, d.PrevState, f)
	} else {
		want, err = flotilla.NextState(flotilla.StateInstalling, d.Type, f)
	}
	if err == nil && want == d.State {
		c.announce(d, "", false)
	}
}

// ConfigData updates a device's attributes from DDI's configData. Keys
// "label.NAME" set labels; "version" sets the reported version. The device
// is read and written in one small write, so the merge decides on the
// device as it is written.
func (c *Core) ConfigData(ctx context.Context, id DeviceIdentity, mode string, data map[string]string) error {
	if len(data) > 256 {
		return flotilla.Errorf(flotilla.EInvalid, "at most 256 attributes are allowed")
	}
	if mode != "" && mode != "merge" && mode != "replace" && mode != "remove" {
		return flotilla.Errorf(flotilla.EInvalid, "mode %q is invalid: use merge, replace or remove", mode)
	}
	wrote := false // by the edit's last run
	d, nd, err := c.Store.EditDevice(ctx, id.Tenant, id.DeviceID, c.Now(), func(d flotilla.Device, requested bool) (*flotilla.DevicePatch, error) {
		p, err := configPatch(d, requested, mode, data)
		wrote = p != nil
		return p, err
	})
	if err != nil || !wrote {
		return err
	}
	// Every write here answers the request (configPatch clears it); what
	// the device is told otherwise depends on its deployments, not on
	// what it uploaded.
	if h := c.hooks.AttributesAnswered; h != nil {
		h(id.Tenant, id.DeviceID)
	} else {
		c.InvalidateDevice(id.Tenant, id.DeviceID)
	}
	c.publishDevice(events.TypeDeviceUpdated, nd)
	if nd.Version != d.Version || !maps.Equal(nd.Labels, d.Labels) {
		c.catchUp(ctx, nd)
	}
	return nil
}

// configPatch is what configData in mode does to d: nil when it changes
// nothing and the attributes were not asked for.
func configPatch(d flotilla.Device, requested bool, mode string, data map[string]string) (*flotilla.DevicePatch, error) {
	attrs := map[string]string{}
	switch mode {
	case "", "merge":
		maps.Copy(attrs, d.Attributes)
		maps.Copy(attrs, data)
	case "replace":
		maps.Copy(attrs, data)
	case "remove":
		for k, v := range d.Attributes {
			if _, drop := data[k]; !drop {
				attrs[k] = v
			}
		}
	}
	if err := validateAttributes(attrs); err != nil {
		return nil, err
	}
	patch := flotilla.DevicePatch{Attributes: &attrs}
	// Labels are written only when the data names some: an operator's
	// label change is not overwritten by a device that names none.
	labels, touched := maps.Clone(d.Labels), false
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range data {
		if name, ok := strings.CutPrefix(k, "label."); ok {
			touched = true
			if mode == "remove" {
				delete(labels, name)
			} else {
				labels[name] = v
			}
		}
	}
	if touched {
		if err := flotilla.ValidateLabels(labels); err != nil {
			return nil, err
		}
		patch.Labels = &labels
	}
	if v, ok := data["version"]; ok && mode != "remove" {
		patch.Version = &v
	}
	// The same attributes again (as after every update) cost no write
	// unless they were asked for; changed ones are written either way.
	same := maps.Equal(attrs, d.Attributes) && (patch.Labels == nil || maps.Equal(*patch.Labels, d.Labels)) &&
		(patch.Version == nil || *patch.Version == d.Version)
	if same && !requested {
		return nil, nil
	}
	no := false
	patch.AttributesRequested = &no
	return &patch, nil
}
