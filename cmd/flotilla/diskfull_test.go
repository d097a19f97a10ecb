package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

// diskFullScript runs the server on a small tmpfs of its own (a mount
// namespace), and fills or frees that disk on SIGUSR1 / SIGUSR2.
const diskFullScript = `set -e
mount -t tmpfs -o size=24m tmpfs "$1"
trap 'dd if=/dev/zero of="$1/filler" bs=64k 2>/dev/null || true; echo filled' USR1
trap 'rm -f "$1/filler"; echo freed' USR2
trap 'kill $pid' TERM
"$2" server --listen 127.0.0.1:0 --data-dir "$1/data" --poll-interval 1s &
pid=$!
while kill -0 $pid 2>/dev/null; do wait $pid || true; done
`

// Finding 12: a full disk answered 500 "internal error" while /readyz
// stayed 200.
func TestDiskFull(t *testing.T) {
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "true").CombinedOutput(); err != nil {
		testtool.Missing(t, "disk-full test needs unshare with user and mount namespaces (util-linux; kernel.unprivileged_userns_clone=1): %v %s", err, out)
	}
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", diskFullScript, "sh", dir, flotillaBinary(t))
	cmd.Env = append(cmd.Environ(), "FLOTILLA_ADMIN_TOKEN="+adminSecret)
	out, _ := cmd.StdoutPipe()
	var log testtool.SyncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	var base string
	listen := regexp.MustCompile(`listening on\s+(http://\S+)`)
	lines := make(chan string, 16)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for base == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("server exited: %s", log.String())
			}
			if m := listen.FindStringSubmatch(l); m != nil {
				base = m[1]
			}
		case <-deadline:
			t.Fatalf("server did not start: %s", log.String())
		}
	}
	waitLine := func(want string) {
		t.Helper()
		for {
			select {
			case l := <-lines:
				if l == want {
					return
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("no %q from the script", want)
			}
		}
	}
	api := &servertest.API{T: t, Base: base, Token: adminSecret}
	ready := func() (int, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	api.Upload("fw", "1.0.0", randomBytes(1<<20, 1), "")
	cmd.Process.Signal(syscall.SIGUSR1)
	waitLine("filled")

	// Artifact bytes: 507 with a JSON error, nothing kept.
	code, body := api.Do("PUT", "/api/v1/artifacts/fw/2.0.0", randomBytes(2<<20, 2))
	if code != 507 || servertest.ErrorCode(t, body) != "no_space" {
		t.Fatalf("upload on a full disk = %d %s", code, body)
	}
	if code, _ := api.Do("GET", "/api/v1/artifacts/fw/2.0.0", nil); code != 404 {
		t.Fatalf("the refused artifact exists: %d", code)
	}
	// Database writes: 507 too, never 500, and nothing half-written.
	var refused string
	for i := 0; i < 3000 && refused == ""; i++ {
		id := fmt.Sprintf("dev-%04d", i)
		code, body := api.Do("POST", "/api/v1/devices", map[string]any{"id": id, "attributes": map[string]string{"pad": strings.Repeat("x", 1000)}})
		switch code {
		case 201:
		case 507:
			if servertest.ErrorCode(t, body) != "no_space" {
				t.Fatalf("device create on a full disk: %s", body)
			}
			refused = id
		default:
			t.Fatalf("device create on a full disk = %d %s", code, body)
		}
	}
	if refused == "" {
		t.Fatal("3000 devices fitted on a full disk")
	}
	if code, body := ready(); code != 503 || !strings.Contains(body, "disk full") {
		t.Fatalf("/readyz on a full disk = %d %s", code, body)
	}

	// Space returns: the server notices by itself and serves writes again.
	cmd.Process.Signal(syscall.SIGUSR2)
	waitLine("freed")
	servertest.Eventually(t, 10*time.Second, func() error {
		if code, body := ready(); code != 200 {
			return fmt.Errorf("/readyz = %d %s", code, body)
		}
		return nil
	})
	if code, _ := api.Do("GET", "/api/v1/devices/"+refused, nil); code != 404 {
		t.Fatalf("the refused device %s exists: %d", refused, code)
	}
	api.Must(201, "POST", "/api/v1/devices", map[string]any{"id": refused}, nil)
	api.Upload("fw", "2.0.0", randomBytes(1<<20, 3), "")
	if c, _ := api.Do("GET", "/api/v1/artifacts/fw/1.0.0/content", nil); c != 200 {
		t.Fatalf("the first artifact is gone: %d", c)
	}
}
