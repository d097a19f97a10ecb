// Package blob defines where artifact bytes live. Blobs are addressed by the
// hex SHA-256 of their content, so equal uploads share storage and a key
// alone proves integrity.
//
// Implementations live in subpackages (disk, s3) and all pass the suite in
// blobtest.
package blob

import (
	"context"
	"errors"
	"io"
	"regexp"
	"time"
)

// ErrNotFound is returned for a key the store does not hold.
var ErrNotFound = errors.New("blob not found")

// ErrNoSpace is returned by Put when the storage is full; nothing is kept.
var ErrNoSpace = errors.New("blob storage is full")

// ErrChecksum is returned by Put when the content does not hash to the
// expected SHA-256.
var ErrChecksum = errors.New("blob checksum mismatch")

// Info describes a stored blob.
type Info struct {
	Key     string // hex SHA-256
	Size    int64
	ModTime time.Time
}

// Object is an open blob that supports random access, as http.ServeContent
// needs for Range requests.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// PutOptions tune Put.
type PutOptions struct {
	// SHA256, if set, must equal the content's hash or nothing is kept.
	SHA256 string
	// SizeHint is the content length if known (-1 or 0 if not); stores may
	// use it to choose an upload strategy.
	SizeHint int64
}

// Store holds blobs.
type Store interface {
	// Put streams r into the store and returns where it went. On any error,
	// including ErrChecksum and errors from r, nothing is kept.
	Put(ctx context.Context, r io.Reader, opts PutOptions) (Info, error)
	// Open returns the blob for reading, or ErrNotFound.
	Open(ctx context.Context, key string) (Object, error)
	// Stat describes the blob, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the blob; deleting a missing blob is not an error.
	Delete(ctx context.Context, key string) error
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// Presigner is implemented by stores that can hand out time-limited URLs
// from which a client downloads a blob directly.
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (string, error)
}

var keyRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidKey reports whether key is a well-formed blob key.
func ValidKey(key string) bool { return keyRE.MatchString(key) }
