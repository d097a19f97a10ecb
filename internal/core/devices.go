package core

import (
	"context"
	"net/url"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

// NewDevice is a pre-registration request.
type NewDevice struct {
	Tenant     string
	ID         string
	Labels     map[string]string
	Attributes map[string]string
	Address    string
}

// ValidateAddress checks a push node's base URL.
func ValidateAddress(addr string) error {
	if addr == "" {
		return nil
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return flotilla.Errorf(flotilla.EInvalid, "address %q is invalid: use an http(s) base URL such as http://10.0.1.134:8080", addr)
	}
	return nil
}

func validateAttributes(attrs map[string]string) error {
	if len(attrs) > 256 {
		return flotilla.Errorf(flotilla.EInvalid, "at most 256 attributes are allowed")
	}
	for k, v := range attrs {
		if k == "" || len(k) > 128 || len(v) > 1024 {
			return flotilla.Errorf(flotilla.EInvalid, "attribute %q: keys must be 1-128 characters and values at most 1024", k)
		}
	}
	return nil
}

// Credentials are a device's secrets as created or rotated: shown once.
type Credentials struct {
	// Token is the device's DDI token (TargetToken).
	Token string
	// NodeToken is what the server will send a push node (flotilla agent
	// --listen-token); set when the device has an address.
	NodeToken string
}

// CreateDevice pre-registers a device and returns its DDI token — and, for
// a push node (an address), the token the server will send it — shown only
// this once. Giving an address needs nodes:write: it says where the server
// sends updates.
func (c *Core) CreateDevice(ctx context.Context, p Principal, req NewDevice) (flotilla.Device, Credentials, error) {
	tenant, err := p.TenantFor(req.Tenant)
	if err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if req.Address != "" {
		if err := p.Require(flotilla.ScopeNodesWrite); err != nil {
			return flotilla.Device{}, Credentials{}, err
		}
	}
	if err := flotilla.ValidateDeviceID(req.ID); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if err := flotilla.ValidateLabels(req.Labels); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if err := validateAttributes(req.Attributes); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if err := ValidateAddress(req.Address); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if _, err := c.Store.GetTenant(ctx, tenant); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if err := c.checkDeviceCount(ctx, tenant); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	now := c.Now()
	d := flotilla.Device{Tenant: tenant, ID: req.ID, Labels: orEmpty(req.Labels), Attributes: orEmpty(req.Attributes),
		Address: req.Address, CreatedAt: now, UpdatedAt: now}
	var cred Credentials
	d.TokenHash, d.TokenSealed, cred.Token = c.newDeviceToken(tenant, req.ID)
	if req.Address != "" {
		d.NodeTokenSealed, cred.NodeToken = c.newNodeToken(tenant, req.ID)
	}
	if err := c.Store.CreateDevice(ctx, d); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	c.publishDevice(events.TypeDeviceRegistered, d)
	return d, cred, nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (c *Core) publishDevice(typ string, d flotilla.Device) {
	c.Events.Publish(events.Event{Type: typ, Tenant: d.Tenant, DeviceID: d.ID, Time: c.Now(), Key: "device/" + d.ID,
		Data: events.Message(map[string]any{"type": typ, "deviceId": d.ID, "labels": d.Labels, "version": d.Version})})
}

// GetDevice returns one device.
func (c *Core) GetDevice(ctx context.Context, p Principal, tenant, id string) (flotilla.Device, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Device{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesRead); err != nil {
		return flotilla.Device{}, err
	}
	return c.Store.GetDevice(ctx, tenant, id)
}

// DeviceListQuery pages through devices.
type DeviceListQuery struct {
	Tenant   string
	Selector string
	After    string
	Limit    int
}

// ListDevices returns a page of devices matching a selector, in id order.
func (c *Core) ListDevices(ctx context.Context, p Principal, q DeviceListQuery) ([]flotilla.Device, error) {
	tenant, err := p.TenantFor(q.Tenant)
	if err != nil {
		return nil, err
	}
	if err := p.Require(flotilla.ScopeDevicesRead); err != nil {
		return nil, err
	}
	sel, err := label.Parse(q.Selector)
	if err != nil {
		return nil, err
	}
	return c.Store.ListDevices(ctx, tenant, store.DeviceQuery{Selector: sel, AfterID: q.After, Limit: q.Limit})
}

func deviceQuery(after string, limit int) store.DeviceQuery {
	return store.DeviceQuery{AfterID: after, Limit: limit}
}

// UpdateDevice changes labels, attributes or the push address. Setting an
// address needs nodes:write; a device that gets its first address gets a
// node token too, returned this once.
func (c *Core) UpdateDevice(ctx context.Context, p Principal, tenant, id string, patch flotilla.DevicePatch) (flotilla.Device, string, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.Device{}, "", err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return flotilla.Device{}, "", err
	}
	patch.TokenHash, patch.TokenSealed, patch.NodeTokenSealed = nil, nil, nil // rotated through their own calls
	var nodeToken string
	if patch.Address != nil {
		if err := p.Require(flotilla.ScopeNodesWrite); err != nil {
			return flotilla.Device{}, "", err
		}
		cur, err := c.Store.GetDevice(ctx, tenant, id)
		if err != nil {
			return flotilla.Device{}, "", err
		}
		if *patch.Address != "" && cur.NodeTokenSealed == "" {
			var sealed string
			sealed, nodeToken = c.newNodeToken(tenant, id)
			patch.NodeTokenSealed = &sealed
		}
	}
	if patch.Labels != nil {
		if err := flotilla.ValidateLabels(*patch.Labels); err != nil {
			return flotilla.Device{}, "", err
		}
	}
	if patch.Attributes != nil {
		if err := validateAttributes(*patch.Attributes); err != nil {
			return flotilla.Device{}, "", err
		}
	}
	if patch.Address != nil {
		if err := ValidateAddress(*patch.Address); err != nil {
			return flotilla.Device{}, "", err
		}
	}
	patch.Version = nil // reported by the device, not set by operators
	d, err := c.Store.UpdateDevice(ctx, tenant, id, patch, c.Now())
	if err != nil {
		return d, "", err
	}
	c.publishDevice(events.TypeDeviceUpdated, d)
	if patch.Labels != nil {
		c.catchUp(ctx, d)
	}
	return d, nodeToken, nil
}

// DeleteDevice removes a device and its deployment history.
func (c *Core) DeleteDevice(ctx context.Context, p Principal, tenant, id string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return err
	}
	if err := c.Store.DeleteDevice(ctx, tenant, id); err != nil {
		return err
	}
	c.ForgetDeviceAuth()
	c.InvalidateDevice(tenant, id)
	c.publishDevice(events.TypeDeviceDeleted, flotilla.Device{Tenant: tenant, ID: id})
	return nil
}

// DeviceStatus derives a device's connectivity state.
func (c *Core) DeviceStatus(d flotilla.Device) string {
	return d.Status(c.Now(), c.Config.OfflineAfter)
}

// FleetSummary counts the tenant's devices by connectivity and version.
func (c *Core) FleetSummary(ctx context.Context, p Principal, tenant string) (flotilla.FleetSummary, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return flotilla.FleetSummary{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesRead); err != nil {
		return flotilla.FleetSummary{}, err
	}
	return c.Store.FleetSummary(ctx, tenant, c.Now().Add(-c.Config.OfflineAfter))
}
