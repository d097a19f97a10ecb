package core

import (
	"context"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/ratelimit"
	"github.com/flotilla-ota/flotilla/label"
)

// Quotas bound what one tenant, device or deployment may make the server
// store, as hawkBit's quotas do. Exceeding one is a 429 naming it (413 for
// sizes). Zero fields take the defaults.
type Quotas struct {
	// StatusEntries bounds the status entries (history lines) devices
	// report per deployment; past it only a final status is accepted
	// (hawkBit: maxStatusEntriesPerAction, 1000).
	StatusEntries int
	// MessagesPerStatus bounds the details of one status (hawkBit:
	// maxMessagesPerActionStatus, 50), MessageBytes each detail's length.
	MessagesPerStatus int
	MessageBytes      int
	// RegistrationsPerMinute bounds the devices that register themselves
	// (gateway token or anonymous) per tenant and minute, on each replica.
	RegistrationsPerMinute int
	// DevicesPerTenant bounds a tenant's devices.
	DevicesPerTenant int
	// ArtifactsPerTenant bounds a tenant's artifacts (artifact size is
	// Config.MaxArtifactSize).
	ArtifactsPerTenant int
}

// Default quotas.
const (
	DefaultStatusEntries          = 1000
	DefaultMessagesPerStatus      = 50
	DefaultMessageBytes           = 1024
	DefaultRegistrationsPerMinute = 6000
	DefaultDevicesPerTenant       = 1_000_000
	DefaultArtifactsPerTenant     = 10_000
)

func (q Quotas) withDefaults() Quotas {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&q.StatusEntries, DefaultStatusEntries)
	def(&q.MessagesPerStatus, DefaultMessagesPerStatus)
	def(&q.MessageBytes, DefaultMessageBytes)
	def(&q.RegistrationsPerMinute, DefaultRegistrationsPerMinute)
	def(&q.DevicesPerTenant, DefaultDevicesPerTenant)
	def(&q.ArtifactsPerTenant, DefaultArtifactsPerTenant)
	return q
}

// quotaState is what enforcing quotas needs to remember.
type quotaState struct {
	registrations *ratelimit.Limiter
	mu            sync.Mutex
	devices       map[string]deviceCount // tenant → count, briefly cached
}

type deviceCount struct {
	n  int
	at time.Time
}

func (c *Core) initQuotas() {
	q := c.Config.Quotas
	c.quota.registrations = ratelimit.New(float64(q.RegistrationsPerMinute)/60, max(1, q.RegistrationsPerMinute/6))
	c.quota.devices = map[string]deviceCount{}
}

// checkFeedbackSize enforces the quotas on one status's details.
func (c *Core) checkFeedbackSize(f flotilla.Feedback) error {
	q := c.Config.Quotas
	if len(f.Details) > q.MessagesPerStatus {
		return flotilla.Errorf(flotilla.ETooMany, "quota messages_per_status: a status has %d messages, at most %d are allowed", len(f.Details), q.MessagesPerStatus)
	}
	for _, d := range f.Details {
		if len(d) > q.MessageBytes {
			return flotilla.Errorf(flotilla.ETooLarge, "quota message_bytes: a status message has %d bytes, at most %d are allowed", len(d), q.MessageBytes)
		}
	}
	return nil
}

// checkStatusEntries enforces the quota on a deployment's status entries:
// past it only a final status is stored, so a device can always finish.
func (c *Core) checkStatusEntries(before flotilla.Deployment, ch flotilla.Change) error {
	if ch.Event == nil || ch.Event.Source != flotilla.SourceDevice || ch.Deployment.State.Terminal() {
		return nil
	}
	if q := c.Config.Quotas.StatusEntries; before.DeviceEvents >= q {
		return flotilla.Errorf(flotilla.ETooMany, "quota status_entries_per_deployment: deployment %d has %d status entries; only a final status (closed, canceled, rejected) is accepted now", before.ID, before.DeviceEvents)
	}
	return nil
}

// checkRegistration enforces the quotas on devices registering themselves.
func (c *Core) checkRegistration(ctx context.Context, tenant string) error {
	if ok, wait := c.quota.registrations.Allow(tenant, time.Now()); !ok {
		e := flotilla.Errorf(flotilla.ETooMany, "quota registrations_per_minute: tenant %q registers at most %d devices a minute; try again later", tenant, c.Config.Quotas.RegistrationsPerMinute)
		e.RetryAfter = wait
		return e
	}
	return c.checkDeviceCount(ctx, tenant)
}

// checkDeviceCount enforces the quota on a tenant's devices. The count is
// cached for a few seconds: the quota bounds growth, it is not exact.
func (c *Core) checkDeviceCount(ctx context.Context, tenant string) error {
	c.quota.mu.Lock()
	dc, ok := c.quota.devices[tenant]
	c.quota.mu.Unlock()
	if !ok || time.Since(dc.at) > 5*time.Second {
		n, err := c.Store.CountDevices(ctx, tenant, label.Everything)
		if err != nil {
			return err
		}
		dc = deviceCount{n: n, at: time.Now()}
	}
	if q := c.Config.Quotas.DevicesPerTenant; dc.n >= q {
		return flotilla.Errorf(flotilla.ETooMany, "quota devices_per_tenant: tenant %q has %d devices, at most %d are allowed", tenant, dc.n, q)
	}
	dc.n++
	c.quota.mu.Lock()
	c.quota.devices[tenant] = dc
	c.quota.mu.Unlock()
	return nil
}

// checkArtifactCount enforces the quota on a tenant's artifacts.
func (c *Core) checkArtifactCount(ctx context.Context, tenant string) error {
	n, err := c.Store.CountArtifacts(ctx, tenant)
	if err != nil {
		return err
	}
	if q := c.Config.Quotas.ArtifactsPerTenant; n >= q {
		return flotilla.Errorf(flotilla.ETooMany, "quota artifacts_per_tenant: tenant %q has %d artifacts, at most %d are allowed; delete old versions", tenant, n, q)
	}
	return nil
}
