// Package blobtest is the conformance suite every blob.Store passes.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/blob"
)

// Run runs the suite against the store returned by open. Each subtest gets a
// fresh store from open. leftovers, if not nil, counts the objects physically
// present, to prove failed puts leave nothing behind.
func Run(t *testing.T, open func(t *testing.T) blob.Store, leftovers func(t *testing.T, s blob.Store) int) {
	ctx := context.Background()
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])

	t.Run("PutOpenRoundTrip", func(t *testing.T) {
		s := open(t)
		info, err := s.Put(ctx, bytes.NewReader(data), blob.PutOptions{SizeHint: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		if info.Key != key || info.Size != int64(len(data)) {
			t.Fatalf("Put = %+v, want key %s size %d", info, key, len(data))
		}
		st, err := s.Stat(ctx, key)
		if err != nil || st.Size != int64(len(data)) {
			t.Fatalf("Stat = %+v, %v", st, err)
		}
		o, err := s.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		got, err := io.ReadAll(o)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, err %v; content differs", len(got), err)
		}
		if o.Info().Size != int64(len(data)) {
			t.Fatalf("Object.Info().Size = %d", o.Info().Size)
		}
	})

	t.Run("SeekForRanges", func(t *testing.T) {
		s := open(t)
		if _, err := s.Put(ctx, bytes.NewReader(data), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		o, err := s.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		for _, off := range []int64{1 << 20, 17, int64(len(data)) - 5} {
			if _, err := o.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(o, buf); err != nil {
				t.Fatalf("read at %d: %v", off, err)
			}
			if !bytes.Equal(buf, data[off:off+5]) {
				t.Fatalf("bytes at %d differ", off)
			}
		}
		end, err := o.Seek(0, io.SeekEnd)
		if err != nil || end != int64(len(data)) {
			t.Fatalf("Seek end = %d, %v", end, err)
		}
	})

	t.Run("ChecksumMismatchKeepsNothing", func(t *testing.T) {
		s := open(t)
		_, err := s.Put(ctx, bytes.NewReader(data), blob.PutOptions{SHA256: stringsRepeat("0", 64)})
		if !errors.Is(err, blob.ErrChecksum) {
			t.Fatalf("Put with wrong sha256 = %v, want ErrChecksum", err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Stat after mismatch = %v, want ErrNotFound", err)
		}
		if leftovers != nil {
			if n := leftovers(t, s); n != 0 {
				t.Fatalf("%d objects left behind after checksum mismatch", n)
			}
		}
	})

	t.Run("ReaderErrorKeepsNothing", func(t *testing.T) {
		s := open(t)
		r := io.MultiReader(bytes.NewReader(data[:1<<20]), errReader{})
		if _, err := s.Put(ctx, r, blob.PutOptions{}); err == nil {
			t.Fatal("Put with failing reader succeeded")
		}
		if leftovers != nil {
			if n := leftovers(t, s); n != 0 {
				t.Fatalf("%d objects left behind after reader error", n)
			}
		}
	})

	t.Run("DedupAndDelete", func(t *testing.T) {
		s := open(t)
		for i := 0; i < 2; i++ {
			if _, err := s.Put(ctx, bytes.NewReader(data), blob.PutOptions{SHA256: key}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open after Delete = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("second Delete = %v", err)
		}
	})

	t.Run("MissingAndBadKeys", func(t *testing.T) {
		s := open(t)
		for _, k := range []string{key, "../../etc/passwd", ""} {
			if _, err := s.Open(ctx, k); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("Open(%q) = %v, want ErrNotFound", k, err)
			}
			if _, err := s.Stat(ctx, k); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("Stat(%q) = %v, want ErrNotFound", k, err)
			}
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping = %v", err)
		}
	})

	t.Run("EmptyBlob", func(t *testing.T) {
		s := open(t)
		info, err := s.Put(ctx, bytes.NewReader(nil), blob.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != 0 || info.Key != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
			t.Fatalf("empty Put = %+v", info)
		}
	})

	t.Run("Presign", func(t *testing.T) {
		s := open(t)
		p, ok := s.(blob.Presigner)
		if !ok {
			t.Skip("store does not presign")
		}
		if _, err := s.Put(ctx, bytes.NewReader(data), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		u, err := p.PresignGet(ctx, key, time.Minute, "fw.bin")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Range", "bytes=10-19")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[10:20]) {
			t.Fatalf("presigned range GET = %d, %d bytes", resp.StatusCode, len(body))
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client went away") }

func stringsRepeat(s string, n int) string { return string(bytes.Repeat([]byte(s), n)) }
