// Package testtool finds the third-party programs tests run for real —
// versitygw, helm — and builds them from the Go module proxy when they are
// not installed, so a fresh machine needs nothing installed by hand. It
// also starts private RabbitMQ nodes and picks ports for processes a test
// starts later.
package testtool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Tool is a program tests need.
type Tool struct {
	Name    string // binary name
	Package string // Go package path of its main
	Version string // module version
	Env     string // environment variable that may name the binary
}

var (
	mu     sync.Mutex
	builds = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Path returns the tool's binary: $Env, the PATH, or a copy built earlier
// into the user's cache (BuildAll). A test that needs a tool the machine
// does not have skips, saying how to get it; under FLOTILLA_TEST_REQUIRE_ALL
// it fails.
func (tl Tool) Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(tl.Env); p != "" {
		return p
	}
	if p, err := exec.LookPath(tl.Name); err == nil {
		return p
	}
	if p := tl.cached(); p != "" {
		return p
	}
	if os.Getenv("FLOTILLA_TEST_BUILD_TOOLS") != "1" {
		Missing(t, "%s is not installed: set %s to its binary, or FLOTILLA_TEST_BUILD_TOOLS=1 to build %s@%s once into the user cache (minutes; .ci/run does)",
			tl.Name, tl.Env, tl.Package, tl.Version)
		return ""
	}
	mu.Lock()
	b := builds[tl.Name]
	if b == nil {
		b = &build{}
		builds[tl.Name] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.path, b.err = tl.install() })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// dir is where a build of the tool is cached.
func (tl Tool) dir() string {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "flotilla-test-tools", tl.Name+"-"+strings.TrimPrefix(tl.Version, "v"))
}

// cached returns an earlier build of the tool, or "".
func (tl Tool) cached() string {
	bin := filepath.Join(tl.dir(), tl.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	return ""
}

func (tl Tool) install() (string, error) {
	dir := tl.dir()
	bin := filepath.Join(dir, tl.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.Command("go", "install", tl.Package+"@"+tl.Version)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (set %s to use an installed one): %v\n%s", tl.Name, tl.Env, err, out)
	}
	return bin, nil
}

// Versitygw is the S3-compatible server the blob store tests run against.
var Versitygw = Tool{Name: "versitygw", Package: "github.com/versity/versitygw/cmd/versitygw", Version: "v1.8.0", Env: "FLOTILLA_TEST_VERSITYGW"}

// Helm renders the chart under deploy/helm.
var Helm = Tool{Name: "helm", Package: "helm.sh/helm/v3/cmd/helm", Version: "v3.22.0", Env: "FLOTILLA_TEST_HELM"}

// RequireAll reports whether FLOTILLA_TEST_REQUIRE_ALL is set: CI installs
// every tool, so there a test that would skip for a missing one fails.
func RequireAll() bool { return os.Getenv("FLOTILLA_TEST_REQUIRE_ALL") == "1" }

// Missing skips the test because something it needs is not on this
// machine — saying what and how to get it — or fails it under
// FLOTILLA_TEST_REQUIRE_ALL=1.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if RequireAll() {
		t.Fatalf("%s (FLOTILLA_TEST_REQUIRE_ALL=1: nothing may be skipped)", msg)
	}
	t.Skip(msg)
}

// ListenAddr is ListenPort as a 127.0.0.1 address.
func ListenAddr(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", ListenPort(t)) }

// ListenPort returns a loopback port below the kernel's ephemeral range
// that nothing listens on. The range matters: an outgoing connection of a
// test running beside this one takes its local port from the ephemeral
// range, so a port picked there may be gone when a process binds it.
func ListenPort(t testing.TB) int {
	lo, hi := 20000, 32000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if n, _ := fmt.Sscan(string(b), &first, &last); n == 2 && first > 11000 {
			lo, hi = 10000, first
		}
	}
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatalf("no free loopback port in [%d, %d)", lo, hi)
	return 0
}

// SyncBuffer collects a process's output (both streams, written from
// their own goroutines) while the test or bench reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
