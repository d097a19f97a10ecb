package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
	"github.com/flotilla-ota/flotilla/internal/blob/s3/s3test"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/push"
	"github.com/flotilla-ota/flotilla/updater"
)

// startOnS3 runs a server whose artifacts live in a real S3-compatible
// server, with presigned downloads on.
func startOnS3(t *testing.T) (*servertest.Server, *s3test.Server) {
	t.Helper()
	s3 := s3test.Start(t)
	for _, kv := range s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.BlobURL, c.PresignDownloads = s3.URL(), true
	}))
	return s, s3
}

func ddiGet(t *testing.T, url, auth string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// TestPresignedDDIDownload: the DDI download-http link of an artifact in S3
// is a presigned object-storage URL; a plain HTTP client (no Flotilla
// credentials) gets exactly the uploaded bytes from it, and the server's own
// download link still works for clients that use it.
func TestPresignedDDIDownload(t *testing.T) {
	s, s3 := startOnS3(t)
	payload := make([]byte, 5<<20+123) // several multipart parts' worth for small part sizes
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	s.API.Upload("gw-fw", "3.1.0", payload, "")
	tok := s.API.CreateDevice("gw-1", nil)
	s.API.Assign("gw-1", "gw-fw", "3.1.0", nil)

	auth := "TargetToken " + tok
	var poll ddi.Poll
	ddiGet(t, s.URL+"/default/controller/v1/gw-1", auth, &poll)
	if poll.Links.DeploymentBase == nil {
		t.Fatalf("no deployment offered: %+v", poll)
	}
	var dep ddi.DeploymentBase
	ddiGet(t, poll.Links.DeploymentBase.Href, auth, &dep)
	art := dep.Deployment.Chunks[0].Artifacts[0]
	if art.Hashes.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("advertised sha256 %s", art.Hashes.SHA256)
	}
	direct, err := url.Parse(art.Links.DownloadHTTP.Href)
	if err != nil {
		t.Fatal(err)
	}
	if direct.Host != s3.Endpoint || direct.Query().Get("X-Amz-Signature") == "" {
		t.Fatalf("download-http is not a presigned object-storage URL: %s", direct)
	}
	if !strings.HasPrefix(art.Links.Download.Href, s.URL) {
		t.Fatalf("download link %s does not point at the server", art.Links.Download.Href)
	}
	for _, link := range []struct{ href, auth string }{{direct.String(), ""}, {art.Links.Download.Href, auth}} {
		req, _ := http.NewRequest("GET", link.href, nil)
		if link.auth != "" {
			req.Header.Set("Authorization", link.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, _ := io.Copy(h, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Fatalf("GET %s: status %d, %d bytes, sha256 %x", link.href, resp.StatusCode, n, h.Sum(nil))
		}
	}
	// A Range read straight from object storage, as a resuming client does.
	req, _ := http.NewRequest("GET", direct.String(), nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, payload[1000:2000]) {
		t.Fatalf("range read: %d, %d bytes", resp.StatusCode, len(part))
	}
}

// TestSDKInstallsFromS3: the Go SDK follows the presigned link, checks the
// sha256 and reports success.
func TestSDKInstallsFromS3(t *testing.T) {
	s, _ := startOnS3(t)
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	s.API.Upload("gw-fw", "3.2.0", payload, "")
	tok := s.API.CreateDevice("gw-2", nil)
	d := s.API.Assign("gw-2", "gw-fw", "3.2.0", nil)

	got := make(chan []byte, 1)
	h := &fileHandler{got: got}
	s.StartDevice(t, updater.Config{ControllerID: "gw-2", Token: tok, CurrentVersion: "3.1.0", Handler: h,
		FirstCheck: updater.Interval{Min: time.Millisecond, Max: 10 * time.Millisecond}})
	s.API.WaitDeployment("gw-2", d.ID, 30*time.Second, "succeeded")
	if b := <-got; !bytes.Equal(b, payload) {
		t.Fatalf("installed %d bytes that differ from the upload", len(b))
	}
	if n := s.Metric(t, `flotilla_ddi_downloads_total{kind="full"}`) + s.Metric(t, `flotilla_ddi_downloads_total{kind="range"}`); n != 0 {
		t.Fatalf("the server streamed %v downloads itself; presigned downloads should bypass it", n)
	}
}

type fileHandler struct {
	updater.DefaultFetcher
	got chan []byte
}

func (h *fileHandler) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	b, err := os.ReadFile(p.Path)
	if err != nil {
		return err
	}
	h.got <- b
	return nil
}

// TestReadyzFollowsObjectStorage: /readyz turns 503 while the S3 server is
// gone, naming the blob store; /healthz (liveness) stays 200.
func TestReadyzFollowsObjectStorage(t *testing.T) {
	s, s3 := startOnS3(t)
	check := func(path string) (int, map[string]any) {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	if code, v := check("/readyz"); code != 200 {
		t.Fatalf("readyz with S3 up: %d %v", code, v)
	}
	s3.Stop()
	code, v := check("/readyz")
	checks, _ := v["checks"].(map[string]any)
	if code != http.StatusServiceUnavailable || checks["blobs"] == "ok" || checks["store"] != "ok" {
		t.Fatalf("readyz with S3 down: %d %v", code, v)
	}
	if code, _ := check("/healthz"); code != 200 {
		t.Fatalf("healthz with S3 down: %d", code)
	}
}

// TestPushFromObjectStorage: with presigning on, a push node is handed a
// presigned URL and fetches the artifact from object storage itself — the
// server sends no bytes. A node that will not fetch, and one whose fetch
// fails, get the bytes from the server instead; all three install exactly
// the uploaded artifact.
func TestPushFromObjectStorage(t *testing.T) {
	s, _ := startOnS3(t)
	payload := make([]byte, 3<<20)
	rand.Read(payload)
	s.API.Upload("node-fw", "4.0.0", payload, "")

	type node struct {
		*push.Node
		puts      atomic.Int32
		installed chan []byte
	}
	broken := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("object storage unreachable from this node")
	})}
	start := func(id string, cfg push.NodeConfig) *node {
		n := &node{installed: make(chan []byte, 1)}
		cfg.StateDir, cfg.Version, cfg.Logger = t.TempDir(), "3.0.0", slog.New(slog.DiscardHandler)
		cfg.Installer = push.InstallerFunc(func(_ context.Context, _ push.Artifact, p string) error {
			b, err := os.ReadFile(p)
			n.installed <- b
			return err
		})
		pn, err := push.NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.Node = pn
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				n.puts.Add(1)
			}
			pn.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": id, "address": srv.URL}, nil)
		return n
	}
	nodes := map[string]*node{
		"fetches":    start("fetches", push.NodeConfig{}),
		"no-fetch":   start("no-fetch", push.NodeConfig{NoFetch: true}),
		"fetch-fail": start("fetch-fail", push.NodeConfig{HTTPClient: broken}),
	}
	for i, id := range []string{"fetches", "no-fetch", "fetch-fail"} {
		uid := fmt.Sprintf("4d5e6f70-0000-4000-8000-%012d", i)
		s.API.Must(202, "POST", "/api/v1/devices/"+id+"/updates", map[string]any{"id": uid, "artifact": map[string]string{"name": "node-fw", "version": "4.0.0"}}, nil)
	}
	for id, n := range nodes {
		select {
		case b := <-n.installed:
			if !bytes.Equal(b, payload) {
				t.Fatalf("%s installed %d bytes that differ from the upload", id, len(b))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no install; node status %+v", id, n.Status())
		}
		servertest.Eventually(t, 10*time.Second, func() error {
			if st := n.Status(); st.State != push.StateComplete || st.Version != "4.0.0" {
				return fmt.Errorf("%s: node %s at %s", id, st.State, st.Version)
			}
			return nil
		})
	}
	if k := nodes["fetches"].puts.Load(); k != 0 {
		t.Fatalf("the server sent the fetching node the bytes %d times", k)
	}
	for _, id := range []string{"no-fetch", "fetch-fail"} {
		if nodes[id].puts.Load() == 0 {
			t.Fatalf("%s got no bytes from the server", id)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
