package store

import "github.com/flotilla-ota/flotilla"

// DevicePoll is what a device's poll is answered from when no answer is
// cached: read in one statement, because every such poll asks.
type DevicePoll struct {
	// Open are the device's open deployments, oldest first.
	Open []flotilla.Deployment
	// Installed is its last succeeded deployment, if any.
	Installed *flotilla.Deployment
	// AttributesRequested: the device should upload its attributes.
	AttributesRequested bool
}
