// Package s3test starts a real S3-compatible server (versitygw, built from
// the Go module proxy) for tests, on a loopback port with its own
// directory.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/blob/s3"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

// Credentials of every test server.
const (
	AccessKey = "flotilla-test"
	SecretKey = "flotilla-test-secret-0123456789"
)

// Binary finds versitygw: $FLOTILLA_TEST_VERSITYGW, the PATH, or a copy
// built into the user's cache with `go install` (minutes, once).
func Binary(t testing.TB) string { return testtool.Versitygw.Path(t) }

// Server is a running versitygw.
type Server struct {
	Endpoint string // host:port
	Bucket   string
	cmd      *exec.Cmd
}

// Start runs a server until the test ends and makes a bucket in it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	root := t.TempDir()
	addr := testtool.ListenAddr(t)
	cmd := exec.Command(bin, "--access", AccessKey, "--secret", SecretKey, "--port", addr, "posix", root)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := make([]byte, 4)
	rand.Read(b)
	s := &Server{Endpoint: addr, Bucket: "flotilla-" + hex.EncodeToString(b), cmd: cmd}
	// Create the bucket.
	if _, err := s.Open(t); err != nil {
		t.Fatal(err)
	}
	return s
}

// Config is the blob store configuration for this server's bucket.
func (s *Server) Config() s3.Config {
	return s3.Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Insecure: true, AccessKey: AccessKey, SecretKey: SecretKey, CreateBucket: true, Region: "us-east-1"}
}

// URL is the --blob-url for this server.
func (s *Server) URL() string {
	return "s3://" + s.Bucket + "?endpoint=" + s.Endpoint + "&insecure=true&create=true&region=us-east-1"
}

// Env is the credentials environment for processes using the server.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey}
}

// Open returns a blob store on the server's bucket.
func (s *Server) Open(t testing.TB) (*s3.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s3.Open(ctx, s.Config())
}

// Stop kills the server, to test what happens when storage is gone.
func (s *Server) Stop() { s.cmd.Process.Kill(); s.cmd.Wait() }
