// Package events carries state changes from where they happen (the core,
// the scheduler, device protocols) to whoever watches (WebSocket and SSE
// clients, the UI, other replicas).
//
// Publishing never blocks: a Hub fans events out to subscribers through
// bounded queues and coalesces or drops for subscribers that fall behind.
package events

import (
	"encoding/json"
	"time"
)

// Event types.
const (
	TypeArtifactAdded    = "artifact_added"
	TypeArtifactDeleted  = "artifact_deleted"
	TypeDeviceRegistered = "device_registered"
	TypeDeviceUpdated    = "device_updated"
	TypeDeviceDeleted    = "device_deleted"
	TypeDeviceOnline     = "device_online"
	TypeDeviceOffline    = "device_offline"
	TypeDeployment       = "deployment"
	TypeWave             = "wave"
	TypeRollout          = "rollout"
	// The two message shapes of the SPORE gateway, kept exactly.
	TypeRolloutProgress  = "rollout_progress"
	TypeNodeStatusUpdate = "node_status_update"
	TypeSnapshot         = "snapshot"
)

// Event is one state change. Data is the JSON message clients receive.
type Event struct {
	// Seq orders events within one hub; assigned on publish.
	Seq       uint64
	Type      string
	Tenant    string
	RolloutID string
	DeviceID  string
	Time      time.Time
	// Key, when set, lets a hub coalesce: for a slow subscriber only the
	// latest event with a given key is kept.
	Key string
	// Batch marks frequent updates (download progress) that may be held
	// briefly and delivered as the latest per Key.
	Batch bool
	Data  json.RawMessage
}

// Publisher accepts events. Publish must not block.
type Publisher interface {
	Publish(Event)
}

// Nop discards events.
type Nop struct{}

// Publish implements Publisher.
func (Nop) Publish(Event) {}

// Message builds the Data of an event from v.
func Message(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
