package updater

import "context"

// Payload is what Fetch produced and Apply consumes.
type Payload struct {
	// Path is the downloaded file, or the OCI layout directory of an
	// "oci-image" update.
	Path string
	// Files lists every downloaded file when an update has several.
	Files []string
	// Image is the reference (by digest) of a pulled OCI image.
	Image string
}

// Handler fetches and applies updates. Embed DefaultFetcher to get the
// standard Fetch and implement only Apply.
type Handler interface {
	// Fetch makes the update's bytes available locally. The client cancels
	// ctx when the server cancels the update.
	Fetch(ctx context.Context, u *Update) (*Payload, error)
	// Apply installs the payload. An error is reported to the server as a
	// failed update. Apply is never interrupted by a cancel request: once
	// it starts, the device rejects cancels.
	Apply(ctx context.Context, u *Update, p *Payload) error
}

// HealthChecker is implemented by handlers that verify the device after
// Apply; the result is reported to the server ("health: ok"), which is
// what rollouts with require_ok wait for.
type HealthChecker interface {
	CheckHealth(ctx context.Context, u *Update) error
}

// RollBacker is implemented by handlers that can restore the previous
// version when the health check fails.
type RollBacker interface {
	RollBack(ctx context.Context, u *Update) error
}

// Recoverer is implemented by handlers that can tell, after a crash during
// Apply, whether the update is in place. Returning nil reports success;
// an error reports failure. Without it, an interrupted install is reported
// as failed.
type Recoverer interface {
	Recover(ctx context.Context, u *Update, p *Payload) error
}

// DefaultFetcher downloads "binary" (and any other non-OCI) artifacts to
// the state directory with resume and checksum verification, and pulls
// "oci-image" artifacts by digest into an OCI layout directory.
type DefaultFetcher struct{}

// Fetch implements Handler.
func (DefaultFetcher) Fetch(ctx context.Context, u *Update) (*Payload, error) {
	return u.FetchDefault(ctx)
}
