package core

import (
	"context"
	"slices"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// DeviceView is what a device's poll answer is computed from.
type DeviceView struct {
	// Action is the deployment the device should act on: a pending cancel
	// first, then the oldest running deployment. Nil when idle.
	Action *flotilla.Deployment
	// ActionAlone: no other deployment would be the action once Action
	// ends (the device then has nothing to do).
	ActionAlone bool
	// Installed is the last deployment that succeeded.
	Installed *flotilla.Deployment
	// AttributesRequested asks the device to upload its configData.
	AttributesRequested bool
	// Settings are the tenant's (polling time, back-off).
	Settings flotilla.TenantSettings
}

// DeviceView reads what a device has to do.
func (c *Core) DeviceView(ctx context.Context, id DeviceIdentity) (DeviceView, error) {
	dp, err := c.Store.DevicePoll(ctx, id.Tenant, id.DeviceID)
	if err != nil {
		return DeviceView{}, err
	}
	t, err := c.cachedTenant(ctx, id.Tenant)
	if err != nil {
		return DeviceView{}, err
	}
	return deviceView(dp, t.Settings), nil
}

// deviceView picks what a device is told from its poll's read.
func deviceView(dp store.DevicePoll, settings flotilla.TenantSettings) DeviceView {
	v := DeviceView{Installed: dp.Installed, AttributesRequested: dp.AttributesRequested, Settings: settings}
	// Push deliveries are the server's business, not the polling client's.
	open := slices.DeleteFunc(dp.Open, func(d flotilla.Deployment) bool { return d.Delivery == flotilla.DeliveryPush })
	act, running := -1, 0 // the action, and the deployments that could be
	for i := range open {
		if open[i].State == flotilla.StateScheduled {
			continue
		}
		running++
		if act < 0 || (open[i].State == flotilla.StateCancelRequested && open[act].State != flotilla.StateCancelRequested) {
			act = i
		}
	}
	if act >= 0 {
		v.Action, v.ActionAlone = &open[act], running == 1
	}
	return v
}

// readDevice is how authentication reads a device: its token hash, or with
// wantView the poll's whole read, which carries the hash too, so that a
// poll without a cached answer reads the device once. ENotFound for a
// device that does not exist.
func (c *Core) readDevice(ctx context.Context, tenant, deviceID string, settings flotilla.TenantSettings, wantView bool) (hash string, view *DeviceView, err error) {
	if !wantView {
		hash, err = c.Store.DeviceTokenHash(ctx, tenant, deviceID)
		return hash, nil, err
	}
	dp, err := c.Store.DevicePoll(ctx, tenant, deviceID)
	if err != nil {
		return "", nil, err
	}
	if !dp.Registered {
		return "", nil, flotilla.Errorf(flotilla.ENotFound, "device %q not found", deviceID)
	}
	v := deviceView(dp, settings)
	return dp.TokenHash, &v, nil
}
