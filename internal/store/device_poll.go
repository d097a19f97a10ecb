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
	// Registered: the device exists. A poll that authenticates against
	// the store checks its token with TokenHash, so that a cold poll reads
	// the device once, not once for its token and once for its answer.
	Registered bool
	// TokenHash is the device's token hash ("": none).
	TokenHash string
}
