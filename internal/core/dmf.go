package core

import (
	"context"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// The core's part in hawkBit's Device Management Federation API (package
// dmf carries the messages). A DMF device is an ordinary device reached
// through a message broker instead of polling: its deployments, rollouts
// and events are the same.

// RegisterDMFDevice registers a device that announced itself over DMF
// (THING_CREATED), or marks an existing one as reached over DMF, and owes
// it its open action again (a device that reconnects learns what to do).
func (c *Core) RegisterDMFDevice(ctx context.Context, tenant, id, link, exchange, name string) (flotilla.Device, error) {
	if err := flotilla.ValidateDeviceID(id); err != nil {
		return flotilla.Device{}, err
	}
	if _, err := c.Store.GetTenant(ctx, tenant); err != nil {
		return flotilla.Device{}, err
	}
	created := false
	if _, err := c.Store.GetDevice(ctx, tenant, id); flotilla.IsCode(err, flotilla.ENotFound) {
		if err := c.registerDevice(ctx, tenant, id); err != nil {
			return flotilla.Device{}, err
		}
		created = true
	} else if err != nil {
		return flotilla.Device{}, err
	}
	if err := c.Store.SetDeviceDMF(ctx, tenant, id, link, exchange); err != nil {
		return flotilla.Device{}, err
	}
	if name != "" && len(name) <= 256 {
		if _, err := c.Store.UpdateDevice(ctx, tenant, id, flotilla.DevicePatch{Name: &name}, c.Now()); err != nil {
			return flotilla.Device{}, err
		}
	}
	c.MarkSeen(tenant, id)
	// A device that reconnects is told its open action again ("resend").
	// One registered a moment ago may have been assigned something before
	// its exchange was set (no message then) or after (a message of its
	// own): it is owed what it was not told yet, never the same twice.
	state := store.DMFResend
	if created {
		state = store.DMFOwed
	}
	open, _, err := c.Store.DeviceActions(ctx, tenant, id)
	if err != nil {
		return flotilla.Device{}, err
	}
	// One message tells it all its open actions.
	for _, d := range open {
		if d.Delivery == flotilla.DeliveryPull && d.State != flotilla.StateScheduled {
			if err := c.Store.EnqueueDMF(ctx, store.DMFMessage{Tenant: tenant, DeviceID: id, DeploymentID: d.ID, State: state, CreatedAt: c.Now()}); err != nil {
				return flotilla.Device{}, err
			}
			break
		}
	}
	return c.Store.GetDevice(ctx, tenant, id)
}

// RemoveDMFDevice deletes a device on its own word (THING_REMOVED); it is
// not told it was deleted.
func (c *Core) RemoveDMFDevice(ctx context.Context, tenant, id string) error {
	if err := c.Store.SetDeviceDMF(ctx, tenant, id, "", ""); err != nil {
		return err
	}
	return c.deleteDevice(ctx, tenant, id)
}

// MarkRetrieved records that a DMF device was sent its action, the
// equivalent of a DDI device fetching its deploymentBase.
func (c *Core) MarkRetrieved(ctx context.Context, tenant, deviceID string, id int64) error {
	_, err := c.retrieve(ctx, Ref{Tenant: tenant, DeviceID: deviceID, ID: id}, "sent to the device over DMF")
	return err
}
