package flotilla

import "time"

// Device is a member of the fleet: it pulls updates over DDI or, when it has
// an Address, has them pushed to it.
type Device struct {
	Tenant string
	ID     string
	// Name and Description are for people (hawkBit's target name and
	// description); Name defaults to the id there.
	Name        string
	Description string
	Labels      map[string]string
	Attributes  map[string]string
	// Version is the version the device last reported or last installed.
	Version string
	// Address is the base URL of a push node; empty for pull devices.
	Address    string
	LastSeenAt *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// TokenHash authenticates the device on the DDI API.
	TokenHash string
	// TokenSealed is the device token encrypted by the server, for holders
	// of the devices:tokens scope (hawkBit's READ_TARGET_SECURITY_TOKEN);
	// never the plain token.
	TokenSealed string
	// NodeTokenSealed is the encrypted token the server sends to this
	// push node, and only to it.
	NodeTokenSealed string
	// DMFExchange, for a device that registered over DMF (AMQP), is the
	// exchange its messages go to, and DMFLink the AMQP connection it came
	// in on.
	DMFExchange string
	DMFLink     string
}

// Device connectivity states derived from LastSeenAt.
const (
	DeviceRegistered = "registered" // never seen
	DeviceOnline     = "online"
	DeviceOffline    = "offline"
)

// Status derives the connectivity state at now; a device not seen for
// offlineAfter is offline.
func (d Device) Status(now time.Time, offlineAfter time.Duration) string {
	if d.LastSeenAt == nil {
		return DeviceRegistered
	}
	if now.Sub(*d.LastSeenAt) > offlineAfter {
		return DeviceOffline
	}
	return DeviceOnline
}

// DevicePatch changes device fields; nil leaves a field alone.
type DevicePatch struct {
	Labels     *map[string]string
	Attributes *map[string]string
	Address    *string
	Version    *string
	// Credentials, replaced on rotation.
	TokenHash       *string
	TokenSealed     *string
	NodeTokenSealed *string
	Name            *string
	Description     *string
	// AttributesRequested sets whether the device is asked to upload its
	// attributes (DDI configData).
	AttributesRequested *bool
}

// Apply sets on d the fields p names (AttributesRequested is the store's,
// not the device's).
func (p DevicePatch) Apply(d *Device) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	if p.Labels != nil {
		d.Labels = *p.Labels
	}
	if p.Attributes != nil {
		d.Attributes = *p.Attributes
	}
	set(&d.Address, p.Address)
	set(&d.Version, p.Version)
	set(&d.TokenHash, p.TokenHash)
	set(&d.TokenSealed, p.TokenSealed)
	set(&d.NodeTokenSealed, p.NodeTokenSealed)
	set(&d.Name, p.Name)
	set(&d.Description, p.Description)
}

// FleetSummary is what the dashboard shows about the fleet.
type FleetSummary struct {
	Total, Online, Never int
	Versions             map[string]int
}
