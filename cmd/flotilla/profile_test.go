package main

import (
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerWritesItsCPUProfile: --cpuprofile leaves a profile (gzipped
// protobuf, as runtime/pprof writes it) once the server stops, and a path
// it cannot create stops the start with a message naming it.
func TestServerWritesItsCPUProfile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.prof")
	srv := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "server", "--listen", "127.0.0.1:0", "--data-dir", dir, "--cpuprofile", path)
	for range 50 {
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("server: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no profile after the server stopped: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("profile is not what runtime/pprof writes: %v", err)
	}
	if b, err := io.ReadAll(zr); err != nil || len(b) == 0 {
		t.Fatalf("profile unreadable or empty: %d bytes, %v", len(b), err)
	}

	bad := filepath.Join(dir, "missing", "server.prof")
	err = run(t.Context(), []string{"server", "--listen", "127.0.0.1:0", "--data-dir", dir, "--cpuprofile", bad}, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("an uncreatable profile path: got %v, want an error naming %s", err, bad)
	}
}
