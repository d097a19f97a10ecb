// Package disk stores blobs as files in a local directory: the embedded
// default, needing no configuration.
//
// A blob is written to a temporary file while it is hashed, then renamed to
// objects/<aa>/<sha256>, so a reader never sees a partial blob and a crash
// leaves only a temp file that the next start removes.
package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/flotilla-ota/flotilla/internal/blob"
)

// Store is a blob.Store on the local file system.
type Store struct {
	dir string
	// full is set when a write found the disk full, until one succeeds.
	full atomic.Bool
}

var _ blob.Store = (*Store)(nil)

// Open prepares dir for use, creating it if needed and removing temp files
// left by a crash.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "objects"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("open blob dir: %w", err)
		}
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(key string) string {
	return filepath.Join(s.dir, "objects", key[:2], key)
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, r io.Reader, opts blob.PutOptions) (blob.Info, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return blob.Info{}, fmt.Errorf("create temp blob: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), &ctxReader{ctx: ctx, r: r})
	if err != nil {
		return blob.Info{}, s.noSpace(err)
	}
	key := hex.EncodeToString(h.Sum(nil))
	if opts.SHA256 != "" && opts.SHA256 != key {
		return blob.Info{}, blob.ErrChecksum
	}
	if err := f.Sync(); err != nil {
		return blob.Info{}, s.noSpace(fmt.Errorf("sync blob: %w", err))
	}
	if err := f.Close(); err != nil {
		return blob.Info{}, s.noSpace(fmt.Errorf("close blob: %w", err))
	}
	s.full.Store(false)
	dst := s.path(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return blob.Info{}, fmt.Errorf("create blob dir: %w", err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return blob.Info{}, fmt.Errorf("commit blob: %w", err)
	}
	committed = true
	st, err := os.Stat(dst)
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat blob: %w", err)
	}
	return blob.Info{Key: key, Size: n, ModTime: st.ModTime()}, nil
}

// noSpace marks err as a full disk when it is one.
func (s *Store) noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		s.full.Store(true)
		return fmt.Errorf("%w: %v", blob.ErrNoSpace, err)
	}
	return err
}

// Full reports whether the last write found the disk full. Probe tells
// whether space came back.
func (s *Store) Full() bool { return s.full.Load() }

// Probe writes and removes a megabyte, clearing Full when that works.
func (s *Store) Probe(context.Context) error {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "probe-*")
	if err != nil {
		return s.noSpace(err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, 1<<20))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return s.noSpace(err)
	}
	s.full.Store(false)
	return nil
}

// Open implements blob.Store.
func (s *Store) Open(_ context.Context, key string) (blob.Object, error) {
	if !blob.ValidKey(key) {
		return nil, blob.ErrNotFound
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, blob.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat blob: %w", err)
	}
	return &object{File: f, info: blob.Info{Key: key, Size: st.Size(), ModTime: st.ModTime()}}, nil
}

// Path returns the file holding key, for callers that can use the file
// directly (sendfile); the file must not be modified.
func (s *Store) Path(key string) (string, bool) {
	if !blob.ValidKey(key) {
		return "", false
	}
	return s.path(key), true
}

// Stat implements blob.Store.
func (s *Store) Stat(_ context.Context, key string) (blob.Info, error) {
	if !blob.ValidKey(key) {
		return blob.Info{}, blob.ErrNotFound
	}
	st, err := os.Stat(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return blob.Info{}, blob.ErrNotFound
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat blob: %w", err)
	}
	return blob.Info{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(_ context.Context, key string) error {
	if !blob.ValidKey(key) {
		return nil
	}
	err := os.Remove(s.path(key))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob: %w", err)
	}
	return nil
}

// Ping implements blob.Store: the directory must exist and be writable.
func (s *Store) Ping(context.Context) error {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "ping-*")
	if err != nil {
		return fmt.Errorf("blob dir not writable: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

type object struct {
	*os.File
	info blob.Info
}

var _ interface{ OSFile() *os.File } = (*object)(nil)

func (o *object) Info() blob.Info { return o.info }

// File exposes the underlying file so that HTTP downloads can use sendfile.
func (o *object) OSFile() *os.File { return o.File }

// ctxReader stops a copy when the context ends, so an aborted upload does not
// keep writing.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
