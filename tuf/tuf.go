// Package tuf is the device's half of signed releases: before anything is
// installed it runs The Update Framework's client workflow (go-tuf/v2)
// against the server's repository for the tenant, starting from a root the
// device pins, and accepts only a release that the operator's offline keys
// signed, with exactly the signed length and hashes, not older than what
// runs unless the signature says the downgrade is sanctioned.
//
// What it refuses, and why a compromised server cannot get past it:
//
//   - bytes or hashes that do not match signed targets metadata (the
//     server's hashes travel with the bytes; the signed ones do not);
//   - a release the targets metadata does not list (assigned behind the
//     operator's back);
//   - expired metadata (a server or a man in the middle replaying an old
//     but valid view: a freeze attack);
//   - metadata older than what the device saw before (rollback), which is
//     why the trusted metadata persists in Config.Dir;
//   - a lower version than the one installed, unless signed with
//     allow_downgrade.
//
// The SDK (package updater) and push nodes (package push) use it when given
// a trusted root; it can be used on its own by any installer.
package tuf

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/flotilla-ota/flotilla"
)

// Errors a caller may want to tell apart; each is wrapped with the details.
var (
	// ErrNotSigned: the release is not in the signed targets metadata.
	ErrNotSigned = errors.New("release is not signed")
	// ErrMismatch: the bytes are not the signed ones.
	ErrMismatch = errors.New("does not match the signed length and hashes")
	// ErrDowngrade: the release is older than what runs and not signed as
	// a sanctioned downgrade.
	ErrDowngrade = errors.New("downgrade refused")
	// ErrMetadata: the repository's metadata was refused (bad signature,
	// expired, rolled back, ...).
	ErrMetadata = errors.New("signed metadata refused")
)

// Config configures a Verifier.
type Config struct {
	// Root is the pinned root.json the device trusts first (what
	// `flotilla trust init` wrote). Newer roots are followed from it.
	Root []byte
	// MetadataURL is the tenant's repository, e.g.
	// https://ota.example.com/default/tuf/.
	MetadataURL string
	// Dir keeps the metadata trusted so far. It must survive restarts:
	// it is what makes an older, validly signed view detectable.
	Dir string
	// Client fetches metadata (default http.DefaultClient).
	Client *http.Client
	// Authorize, if set, adds credentials to each metadata request.
	Authorize func(*http.Request)
	// Now is the clock expiry is checked against (default time.Now).
	Now func() time.Time
}

// Verifier checks releases against a tenant's repository. It is safe for
// concurrent use; checks run one at a time.
type Verifier struct {
	cfg Config
	mu  sync.Mutex
}

// New checks cfg and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if _, err := metadata.Root().FromBytes(cfg.Root); err != nil {
		return nil, fmt.Errorf("tuf: the trusted root is not a TUF root.json: %w", err)
	}
	if cfg.MetadataURL == "" || cfg.Dir == "" {
		return nil, errors.New("tuf: Config.MetadataURL and Config.Dir are required")
	}
	if !strings.HasSuffix(cfg.MetadataURL, "/") {
		cfg.MetadataURL += "/"
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tuf: %w", err)
	}
	return &Verifier{cfg: cfg}, nil
}

// Custom is a target's "custom" object as Flotilla signs it.
type Custom struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	Type           string `json:"type,omitempty"`
	AllowDowngrade bool   `json:"allow_downgrade,omitempty"`
}

// Target is a release as the signed metadata describes it.
type Target struct {
	// Path is NAME/VERSION/FILENAME.
	Path   string
	Length int64
	// Hashes maps an algorithm (sha256, sha512) to the hex digest.
	Hashes map[string]string
	Custom Custom
}

// Path is where a release is in the repository.
func Path(name, version, filename string) string { return name + "/" + version + "/" + filename }

// Target refreshes the metadata (root, timestamp, snapshot, targets, in
// that order, each checked) and returns the signed description of path.
func (v *Verifier) Target(ctx context.Context, path string) (*Target, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	root := v.cfg.Root
	if b, err := os.ReadFile(filepath.Join(v.cfg.Dir, "root.json")); err == nil {
		root = b // the newest root trusted so far
	}
	cfg, err := config.New(v.cfg.MetadataURL, root)
	if err != nil {
		return nil, fmt.Errorf("tuf: %w", err)
	}
	cfg.LocalMetadataDir = v.cfg.Dir
	cfg.LocalTargetsDir = filepath.Join(v.cfg.Dir, "targets")
	cfg.Fetcher = &fetcher{ctx: ctx, client: v.cfg.Client, authorize: v.cfg.Authorize}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMetadata, err)
	}
	up.UnsafeSetRefTime(v.cfg.Now())
	if err := up.Refresh(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", ErrMetadata, describe(err))
	}
	tf, err := up.GetTargetInfo(path)
	if err != nil {
		if err.Error() == "target "+path+" not found" { // go-tuf's words for a path no role lists
			return nil, fmt.Errorf("%w: no target %s in the targets metadata", ErrNotSigned, path)
		}
		return nil, fmt.Errorf("%w: %v", ErrMetadata, describe(err))
	}
	t := &Target{Path: path, Length: tf.Length, Hashes: map[string]string{}}
	for alg, h := range tf.Hashes {
		t.Hashes[alg] = hex.EncodeToString(h)
	}
	if tf.Custom != nil {
		if err := json.Unmarshal(*tf.Custom, &t.Custom); err != nil {
			return nil, fmt.Errorf("%w: target %s: custom: %v", ErrMetadata, path, err)
		}
	}
	return t, nil
}

// describe makes go-tuf's errors say what happened in a device report.
func describe(err error) string {
	var exp *metadata.ErrExpiredMetadata
	var eq *metadata.ErrEqualVersionNumber
	var bad *metadata.ErrBadVersionNumber
	var unsigned *metadata.ErrUnsignedMetadata
	switch {
	case errors.As(err, &exp):
		return "expired (freeze attack or a server that stopped re-signing): " + err.Error()
	case errors.As(err, &bad), errors.As(err, &eq):
		return "version rolled back (older than already trusted): " + err.Error()
	case errors.As(err, &unsigned):
		return "signature threshold not met: " + err.Error()
	}
	return err.Error()
}

// CheckVersion refuses to install the target over current when it is
// older, unless it was signed as a sanctioned downgrade.
func (t *Target) CheckVersion(current string) error {
	if current == "" || t.Custom.Version == "" || t.Custom.AllowDowngrade {
		return nil
	}
	if flotilla.CompareVersions(t.Custom.Version, current) < 0 {
		return fmt.Errorf("%w: %s %s is older than the %s installed, and its signature does not allow a downgrade (flotilla release sign --allow-downgrade)",
			ErrDowngrade, t.Custom.Name, t.Custom.Version, current)
	}
	return nil
}

// CheckFile verifies a file's length and every signed hash.
func (t *Target) CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return t.Check(f)
}

// Check verifies r's length and every signed hash.
func (t *Target) Check(r io.Reader) error {
	hs := map[string]hash.Hash{}
	for alg := range t.Hashes {
		switch alg {
		case "sha256":
			hs[alg] = sha256.New()
		case "sha512":
			hs[alg] = sha512.New()
		}
	}
	if len(hs) == 0 {
		return fmt.Errorf("%w: target %s has no sha256 or sha512 hash", ErrMismatch, t.Path)
	}
	n, err := HashParallel(r, hs)
	if err != nil {
		return err
	}
	if n != t.Length {
		return fmt.Errorf("%s %w: %d bytes, signed length %d", t.Path, ErrMismatch, n, t.Length)
	}
	for alg, h := range hs {
		if got := hex.EncodeToString(h.Sum(nil)); got != t.Hashes[alg] {
			return fmt.Errorf("%s %w: %s %s, signed %s", t.Path, ErrMismatch, alg, got, t.Hashes[alg])
		}
	}
	return nil
}

// HashParallel feeds r to every hash at once, one goroutine each, so that
// checking two hashes costs about what checking the slower one does.
func HashParallel(r io.Reader, hs map[string]hash.Hash) (int64, error) {
	if len(hs) == 1 {
		for _, h := range hs {
			return io.Copy(h, r)
		}
	}
	type chunk struct {
		b    []byte
		done *sync.WaitGroup
	}
	var workers []chan chunk
	var wg sync.WaitGroup
	for _, h := range hs {
		ch := make(chan chunk, 2)
		workers = append(workers, ch)
		wg.Add(1)
		go func(h hash.Hash) {
			defer wg.Done()
			for c := range ch {
				h.Write(c.b)
				c.done.Done()
			}
		}(h)
	}
	defer func() {
		for _, ch := range workers {
			close(ch)
		}
		wg.Wait()
	}()
	// Two buffers: one is hashed while the next is read.
	bufs := [2][]byte{make([]byte, 1<<20), make([]byte, 1<<20)}
	var pending [2]sync.WaitGroup
	var n int64
	for i := 0; ; i = 1 - i {
		pending[i].Wait()
		k, err := io.ReadFull(r, bufs[i])
		if k > 0 {
			n += int64(k)
			pending[i].Add(len(workers))
			for _, ch := range workers {
				ch <- chunk{b: bufs[i][:k], done: &pending[i]}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			pending[0].Wait()
			pending[1].Wait()
			return n, nil
		}
		if err != nil {
			pending[0].Wait()
			pending[1].Wait()
			return n, err
		}
	}
}

// fetcher gets metadata with the device's credentials, without retries
// (the caller's poll loop retries) and within the caller's context.
type fetcher struct {
	ctx       context.Context
	client    *http.Client
	authorize func(*http.Request)
}

func (f *fetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if f.authorize != nil {
		f.authorize(req)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: url}
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > maxLength {
			return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d allowed", url, n, maxLength)}
		}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is more than the %d bytes allowed", url, maxLength)}
	}
	return b, nil
}
