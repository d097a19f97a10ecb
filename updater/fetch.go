package updater

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla/tuf"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ErrChecksum reports downloaded bytes that do not match the server's
// hashes; the download is discarded.
var ErrChecksum = errors.New("checksum mismatch")

// FetchDefault is DefaultFetcher's behaviour, callable from custom
// handlers that want it for some updates only.
func (u *Update) FetchDefault(ctx context.Context) (*Payload, error) {
	if len(u.Artifacts) == 0 {
		return nil, errors.New("the update has no artifacts")
	}
	if u.Type == "oci-image" {
		return u.fetchOCI(ctx)
	}
	dir := downloadDir(u.client.cfg.StateDir, u.ActionID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var total int64
	for _, a := range u.Artifacts {
		total += a.Size
	}
	p := &Payload{}
	var before int64
	for _, a := range u.Artifacts {
		path, err := u.DownloadArtifact(ctx, a, dir, func(n int64) {
			if u.job != nil {
				u.job.progress(before+n, total)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Filename, err)
		}
		before += a.Size
		p.Files = append(p.Files, path)
	}
	p.Path = p.Files[0]
	u.verified = true // against the signed hashes, when there are any
	return p, nil
}

// downloadRetries is how many times a download that broke off is tried
// again (1 s, 2 s, 3 s apart) before the update is reported failed.
const downloadRetries = 3

// transient reports whether a download error may pass on its own: the
// connection failed or broke, or the server answered 5xx.
func transient(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.Status >= 500
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// DownloadArtifact fetches one artifact into dir, resuming a partial download left
// by an earlier attempt (HTTP Range with If-Range), and verifies its size
// and hashes. progress, if not nil, is called with the bytes so far.
func (u *Update) DownloadArtifact(ctx context.Context, a Artifact, dir string, progress func(int64)) (string, error) {
	name := filepath.Base(a.Filename)
	if name == "." || name == "/" || name == "" {
		return "", fmt.Errorf("bad file name %q", a.Filename)
	}
	final := filepath.Join(dir, name)
	if verify(final, a) == nil {
		return final, nil
	}
	part, etagFile := final+".part", final+".etag"
	var offset int64
	if st, err := os.Stat(part); err == nil {
		offset = st.Size()
	}
	etag, _ := os.ReadFile(etagFile)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
	if err != nil {
		return "", err
	}
	u.client.authorize(req)
	if offset > 0 && len(etag) > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		req.Header.Set("If-Range", string(etag))
	}
	resp, err := u.client.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	flags := os.O_CREATE | os.O_WRONLY
	switch resp.StatusCode {
	case http.StatusPartialContent:
		flags |= os.O_APPEND
		u.client.log.Info("resuming download", "file", name, "offset", offset)
	case http.StatusOK:
		flags |= os.O_TRUNC
		offset = 0
	case http.StatusRequestedRangeNotSatisfiable:
		// The part file already holds everything (or garbage); check it.
		resp.Body.Close()
		if err := verify(part, a); err != nil {
			os.Remove(part)
			return "", err
		}
		return final, os.Rename(part, final)
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return "", &statusError{Status: resp.StatusCode, Body: string(b)}
	}
	if et := resp.Header.Get("ETag"); et != "" {
		os.WriteFile(etagFile, []byte(et), 0o600)
	}
	f, err := os.OpenFile(part, flags, 0o600)
	if err != nil {
		return "", err
	}
	var body io.Reader = resp.Body
	if rate := u.client.cfg.MaxDownloadRate; rate > 0 {
		body = &rateReader{r: body, rate: rate, ctx: ctx, start: time.Now()}
	}
	n, err := io.Copy(f, &progressReader{r: body, n: offset, fn: progress})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("download interrupted after %d bytes: %w", offset+n, err)
	}
	if err := verify(part, a); err != nil {
		os.Remove(part)
		os.Remove(etagFile)
		return "", err
	}
	os.Remove(etagFile)
	return final, os.Rename(part, final)
}

// rateReader paces reads to rate bytes per second on average.
type rateReader struct {
	r     io.Reader
	rate  int64
	ctx   context.Context
	start time.Time
	n     int64
}

func (r *rateReader) Read(p []byte) (int, error) {
	if max := int(r.rate / 10); max > 0 && len(p) > max {
		p = p[:max]
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	if ahead := time.Duration(float64(r.n)/float64(r.rate)*float64(time.Second)) - time.Since(r.start); ahead > 0 {
		select {
		case <-time.After(ahead):
		case <-r.ctx.Done():
			return n, r.ctx.Err()
		}
	}
	return n, err
}

type progressReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(p.n)
	}
	return n, err
}

// verify checks a file against the artifact's size and its hashes: SHA256
// and SHA512 when given (both in one read, in parallel), else the
// strongest of SHA1 and MD5.
func verify(path string, a Artifact) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	want := map[string]string{}
	hs := map[string]hash.Hash{}
	switch {
	case a.SHA256 != "":
		want["sha256"], hs["sha256"] = a.SHA256, sha256.New()
		if a.SHA512 != "" {
			want["sha512"], hs["sha512"] = a.SHA512, sha512.New()
		}
	case a.SHA1 != "":
		want["sha1"], hs["sha1"] = a.SHA1, sha1.New()
	case a.MD5 != "":
		want["md5"], hs["md5"] = a.MD5, md5.New()
	default:
		return errors.New("the server gave no hash to verify against")
	}
	n, err := tuf.HashParallel(f, hs)
	if err != nil {
		return err
	}
	if a.Size > 0 && n != a.Size {
		return fmt.Errorf("%w: got %d bytes, want %d", ErrChecksum, n, a.Size)
	}
	for alg, h := range hs {
		if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want[alg]) {
			return fmt.Errorf("%w: %s %s, want %s", ErrChecksum, alg, got, want[alg])
		}
	}
	return nil
}

// ociReference is the content of an "oci-image" artifact: the image to run,
// by digest. Plain text ("registry/repo@sha256:...") is accepted too.
type ociReference struct {
	Image string `json:"image"`
}

// ParseOCIReference reads an oci-image artifact's content.
func ParseOCIReference(b []byte) (name.Digest, error) {
	ref := strings.TrimSpace(string(b))
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		var r ociReference
		if err := json.Unmarshal(b, &r); err != nil {
			return name.Digest{}, fmt.Errorf("oci-image artifact is not valid JSON: %w", err)
		}
		ref = r.Image
	}
	d, err := name.NewDigest(ref)
	if err != nil {
		return name.Digest{}, fmt.Errorf("oci-image artifact must name an image by digest (repo@sha256:...): %w", err)
	}
	return d, nil
}

func (u *Update) fetchOCI(ctx context.Context) (*Payload, error) {
	dir := downloadDir(u.client.cfg.StateDir, u.ActionID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	refFile, err := u.DownloadArtifact(ctx, u.Artifacts[0], dir, nil)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(refFile)
	if err != nil {
		return nil, err
	}
	ref, err := ParseOCIReference(b)
	if err != nil {
		return nil, err
	}
	tr := u.client.http.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(tr))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	layoutDir := filepath.Join(dir, "oci")
	os.RemoveAll(layoutDir)
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := lp.AppendImage(img); err != nil {
		return nil, fmt.Errorf("write %s to OCI layout: %w", ref, err)
	}
	got, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if got.String() != ref.DigestStr() {
		return nil, fmt.Errorf("%w: pulled image %s, want %s", ErrChecksum, got, ref.DigestStr())
	}
	u.verified = true // the reference was checked; the image is pulled by digest
	return &Payload{Path: layoutDir, Files: []string{layoutDir}, Image: ref.String()}, nil
}
