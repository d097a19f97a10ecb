// Package push defines Flotilla's push protocol — how the server delivers
// an update to a node that listens for one, instead of polling — and
// implements the node side, so that firmware authors in Go get a complete
// node by supplying an Installer. The protocol is written down in
// docs/push-protocol.md.
//
// The node is the source of truth: it remembers the most recent update id
// and its state across restarts, accepts the same id again idempotently,
// refuses a different id while one is in progress, resumes payloads with
// Content-Range, and aborts only for a matching id.
package push

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Paths of the protocol.
const (
	PathUpdate  = "/flotilla/v1/update"
	PathStatus  = "/flotilla/v1/update/status"
	PathInfo    = "/flotilla/v1/info"
	pathPayload = "/flotilla/v1/update/{id}/payload"
	pathAbort   = "/flotilla/v1/update/{id}/abort"
)

// PayloadPath is where the bytes of update id go.
func PayloadPath(id string) string { return "/flotilla/v1/update/" + id + "/payload" }

// AbortPath aborts update id.
func AbortPath(id string) string { return "/flotilla/v1/update/" + id + "/abort" }

// Artifact describes what an update installs.
type Artifact struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// StartRequest is the body of POST /flotilla/v1/update.
type StartRequest struct {
	ID       string   `json:"id"`
	Artifact Artifact `json:"artifact"`
	// URL, when set, is where the node may fetch the bytes itself with
	// GET (a presigned object-storage URL, valid for a limited time), so
	// that they need not pass through the server. A node that fetches
	// reports "fetching": true while it does; a node that cannot, or
	// whose fetch fails, stays "receiving" and the server sends the rest
	// with PUT .../payload as usual.
	URL string `json:"url,omitempty"`
	// Target, for a tenant that signs its releases, is the release's path
	// in the tenant's TUF repository (NAME/VERSION/FILENAME); a node
	// configured with a trusted root verifies the update against it
	// before installing. MetadataToken lets the node read the repository
	// (Authorization: Bearer) for a limited time.
	Target        string `json:"target,omitempty"`
	MetadataToken string `json:"metadataToken,omitempty"`
}

// States of an update on a node.
const (
	StateIdle      = "idle"
	StateReceiving = "receiving"
	StateVerifying = "verifying"
	StateApplying  = "applying"
	StateComplete  = "complete"
	StateFailed    = "failed"
	StateAborted   = "aborted"
)

// Terminal reports whether an update in state s is over.
func Terminal(s string) bool {
	return s == StateComplete || s == StateFailed || s == StateAborted || s == StateIdle
}

// Status is GET /flotilla/v1/update/status, and the answer to most calls.
type Status struct {
	ID            string   `json:"id,omitempty"`
	State         string   `json:"state"`
	BytesReceived int64    `json:"bytesReceived"`
	Total         int64    `json:"total"`
	Error         string   `json:"error,omitempty"`
	Artifact      Artifact `json:"artifact"`
	// Fetching is true while the node fetches the bytes from the start
	// request's URL itself.
	Fetching bool `json:"fetching,omitempty"`
	// Version is the version the node runs now.
	Version   string    `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Info is GET /flotilla/v1/info.
type Info struct {
	DeviceID string            `json:"deviceId,omitempty"`
	Version  string            `json:"version"`
	Labels   map[string]string `json:"labels"`
}

// ErrorBody is the JSON of every error answer; Current names the update in
// progress when a different one was refused.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Current string `json:"current,omitempty"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidID reports whether id is a UUID, as update ids must be.
func ValidID(id string) bool { return uuidRE.MatchString(id) }

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks a start request.
func (r StartRequest) Validate() error {
	switch {
	case !ValidID(r.ID):
		return fmt.Errorf("id %q is not a UUID", r.ID)
	case r.Artifact.Name == "" || r.Artifact.Version == "":
		return fmt.Errorf("artifact.name and artifact.version are required")
	case r.Artifact.Size < 0:
		return fmt.Errorf("artifact.size must not be negative")
	case !sha256RE.MatchString(r.Artifact.SHA256):
		return fmt.Errorf("artifact.sha256 must be 64 lower-case hex digits")
	}
	if r.URL != "" {
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("url must be an absolute http or https URL")
		}
	}
	return nil
}

// ParseStart decodes a start request; exposed for fuzzing.
func ParseStart(b []byte) (StartRequest, error) {
	var r StartRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("invalid JSON: %v", err)
	}
	return r, r.Validate()
}
