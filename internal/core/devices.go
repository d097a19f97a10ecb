package core

import (
	"context"
	"encoding/base64"
	"net/url"
	"strings"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

// NewDevice is a pre-registration request.
type NewDevice struct {
	Tenant      string
	ID          string
	Name        string
	Description string
	Labels      map[string]string
	Attributes  map[string]string
	Address     string
	// Token, if set, is the device's DDI token (hawkBit's securityToken
	// given at creation); otherwise one is generated.
	Token string
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
	if len(req.Name) > 256 || len(req.Description) > 4096 {
		return flotilla.Device{}, Credentials{}, flotilla.Errorf(flotilla.EInvalid, "name is limited to 256 and description to 4096 characters")
	}
	if req.Token != "" && (len(req.Token) < 16 || len(req.Token) > 512) {
		return flotilla.Device{}, Credentials{}, flotilla.Errorf(flotilla.EInvalid, "a device token must be 16 to 512 characters")
	}
	if _, err := c.Store.GetTenant(ctx, tenant); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	if err := c.checkDeviceCount(ctx, tenant); err != nil {
		return flotilla.Device{}, Credentials{}, err
	}
	now := c.Now()
	d := flotilla.Device{Tenant: tenant, ID: req.ID, Name: req.Name, Description: req.Description, Labels: orEmpty(req.Labels), Attributes: orEmpty(req.Attributes),
		Address: req.Address, CreatedAt: now, UpdatedAt: now}
	var cred Credentials
	if req.Token != "" {
		d.TokenHash, d.TokenSealed, cred.Token = HashSecret(req.Token), c.Config.Secrets.Seal(req.Token, deviceTokenContext(tenant, req.ID)), req.Token
		if other, err := c.Store.DeviceByTokenHash(ctx, d.TokenHash); err == nil && (other.Tenant != tenant || other.ID != req.ID) {
			return flotilla.Device{}, Credentials{}, flotilla.Errorf(flotilla.EConflict, "that security token is already another device's; choose another")
		}
	} else {
		d.TokenHash, d.TokenSealed, cred.Token = c.newDeviceToken(tenant, req.ID)
	}
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
	// Prefix keeps ids that start with it.
	Prefix string
	// Sort is id (default), last_seen or version; a leading '-' reverses.
	Sort string
	// Cursor is the NextCursor of the previous page.
	Cursor string
	Limit  int
	// WithDeployments adds each device's newest deployment.
	WithDeployments bool
}

// DevicePage is one page of devices.
type DevicePage struct {
	Devices []flotilla.Device
	// Deployments holds each listed device's newest deployment, if asked.
	Deployments map[string]flotilla.Deployment
	// NextCursor continues the listing; "" after the last page.
	NextCursor string
	// Total counts the tenant's devices when the list is not filtered; -1
	// otherwise.
	Total int
}

// ListDevices returns a page of devices, ordered and filtered as q says.
// Paging is by key (a cursor), so a page costs the same at any depth.
func (c *Core) ListDevices(ctx context.Context, p Principal, q DeviceListQuery) (DevicePage, error) {
	tenant, err := p.TenantFor(q.Tenant)
	if err != nil {
		return DevicePage{}, err
	}
	if err := p.Require(flotilla.ScopeDevicesRead); err != nil {
		return DevicePage{}, err
	}
	sel, err := label.Parse(q.Selector)
	if err != nil {
		return DevicePage{}, err
	}
	sq := store.DeviceQuery{Selector: sel, Prefix: q.Prefix, Limit: q.Limit}
	sortName := strings.TrimPrefix(q.Sort, "-")
	sq.Desc = strings.HasPrefix(q.Sort, "-")
	switch sortName {
	case "", "id":
	case "last_seen":
		sq.Sort = store.SortByLastSeen
	case "version":
		sq.Sort = store.SortByVersion
	default:
		return DevicePage{}, flotilla.Errorf(flotilla.EInvalid, "sort %q is invalid: use id, last_seen or version, with a leading '-' for descending", q.Sort)
	}
	if sq.AfterID, sq.AfterValue, err = decodeCursor(q.Cursor, sq.Sort, sq.Desc); err != nil {
		return DevicePage{}, err
	}
	list, err := c.Store.ListDevices(ctx, tenant, sq)
	if err != nil {
		return DevicePage{}, err
	}
	page := DevicePage{Devices: list, Total: -1}
	if q.Limit > 0 && len(list) == q.Limit {
		last := list[len(list)-1]
		page.NextCursor = encodeCursor(last, sq.Sort, sq.Desc)
	}
	if q.WithDeployments && len(list) > 0 {
		ids := make([]string, len(list))
		for i, d := range list {
			ids[i] = d.ID
		}
		if page.Deployments, err = c.Store.LatestDeployments(ctx, tenant, ids); err != nil {
			return DevicePage{}, err
		}
	}
	if sel.Empty() && q.Prefix == "" {
		if page.Total, err = c.Store.CountDevices(ctx, tenant, sel); err != nil {
			return DevicePage{}, err
		}
	}
	return page, nil
}

// A cursor is the last device's id for the default order (as earlier
// versions had it), else "v1." + base64 of order, value and id.
func encodeCursor(d flotilla.Device, sort store.DeviceSort, desc bool) string {
	if sort == store.SortByID && !desc {
		return d.ID
	}
	dir := "a"
	if desc {
		dir = "d"
	}
	raw := string(sort) + "\x00" + dir + "\x00" + store.CursorValue(d, sort) + "\x00" + d.ID
	return "v1." + base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(c string, sort store.DeviceSort, desc bool) (id, value string, err error) {
	if c == "" {
		return "", "", nil
	}
	b64, ok := strings.CutPrefix(c, "v1.")
	if !ok {
		if sort != store.SortByID || desc {
			return "", "", flotilla.Errorf(flotilla.EInvalid, "cursor %q does not belong to this order; start again without a cursor", c)
		}
		return c, "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(b64)
	parts := strings.Split(string(raw), "\x00")
	dir := "a"
	if desc {
		dir = "d"
	}
	if err != nil || len(parts) != 4 || parts[0] != string(sort) || parts[1] != dir {
		return "", "", flotilla.Errorf(flotilla.EInvalid, "cursor %q does not belong to this order; start again without a cursor", c)
	}
	return parts[3], parts[2], nil
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
	if patch.Name != nil && len(*patch.Name) > 256 || patch.Description != nil && len(*patch.Description) > 4096 {
		return flotilla.Device{}, "", flotilla.Errorf(flotilla.EInvalid, "name is limited to 256 and description to 4096 characters")
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
	return c.deleteDevice(ctx, tenant, id)
}

// deleteDevice removes the device and makes every cache forget it.
func (c *Core) deleteDevice(ctx context.Context, tenant, id string) error {
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

// AllDevices returns every device of the tenant with its newest
// deployment, for listings filtered in memory (hawkBit's FIQL queries).
func (c *Core) AllDevices(ctx context.Context, p Principal, tenant string) ([]flotilla.Device, map[string]flotilla.Deployment, error) {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return nil, nil, err
	}
	if err := p.Require(flotilla.ScopeDevicesRead); err != nil {
		return nil, nil, err
	}
	ds, err := c.Store.ListDevices(ctx, tenant, store.DeviceQuery{})
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	latest, err := c.Store.LatestDeployments(ctx, tenant, ids)
	return ds, latest, err
}

// SetAttributesRequested asks the device to send its attributes on its
// next poll (hawkBit's requestAttributes).
func (c *Core) SetAttributesRequested(ctx context.Context, p Principal, tenant, id string) error {
	tenant, err := p.TenantFor(tenant)
	if err != nil {
		return err
	}
	if err := p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return err
	}
	if err := c.Store.SetAttributesRequested(ctx, tenant, id, true); err != nil {
		return err
	}
	c.InvalidateDevice(tenant, id)
	return nil
}
