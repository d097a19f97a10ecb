package updater_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// TestCredentialsGoOnlyToTheServersOrigin: the device token goes to the
// server's scheme, host and port only — never to object storage (a
// presigned link), a look-alike host, another port of the same host, or
// wherever a redirect leads (finding 15 of the security review).
func TestCredentialsGoOnlyToTheServersOrigin(t *testing.T) {
	body := []byte("firmware bytes")
	sum := sha256.Sum256(body)
	var mu sync.Mutex
	seen := map[string]string{} // path → Authorization the storage server got
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		w.Write(body)
	}))
	defer storage.Close()
	finished := make(chan string, 4)
	var ddi *httptest.Server
	ddi = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "TargetToken secret" {
			http.Error(w, "no", 401)
			return
		}
		base := ddi.URL + "/default/controller/v1/dev-1"
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/default/controller/v1/dev-1":
			fmt.Fprintf(w, `{"config":{"polling":{"sleep":"00:00:01"}},"_links":{"deploymentBase":{"href":"%s/deploymentBase/1"}}}`, base)
		case strings.HasSuffix(r.URL.Path, "/deploymentBase/1"):
			// A presigned link on another origin, and the server's own
			// download that redirects there too.
			fmt.Fprintf(w, `{"id":"1","deployment":{"download":"forced","update":"forced","chunks":[{"part":"bApp","version":"2.0.0","name":"fw",
				"artifacts":[{"filename":"fw.bin","size":%d,"hashes":{"sha256":"%s"},"_links":{"download-http":{"href":"%s/presigned/fw.bin?sig=x"}}}]}]}}`,
				len(body), hex.EncodeToString(sum[:]), storage.URL)
		case strings.HasSuffix(r.URL.Path, "/feedback"):
			select {
			case finished <- r.URL.Path:
			default:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer ddi.Close()
	dir := t.TempDir()
	inst := &fileInstaller{target: filepath.Join(dir, "app")}
	c, err := updater.New(updater.Config{Server: ddi.URL, ControllerID: "dev-1", Token: "secret", Handler: inst, StateDir: filepath.Join(dir, "state"),
		FirstCheck: updater.Interval{Min: 0, Max: time.Millisecond}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 10*time.Second, func() error {
		if inst.applied.Load() != 1 {
			return fmt.Errorf("not installed yet")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if auth, ok := seen["/presigned/fw.bin"]; !ok || auth != "" {
		t.Fatalf("object storage got Authorization %q (fetched: %v)", auth, ok)
	}
}
