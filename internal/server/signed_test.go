package server_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/blob/s3/s3test"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/storetest"
	"github.com/flotilla-ota/flotilla/push"
	"github.com/flotilla-ota/flotilla/updater"
)

// TestSignedReleasesOnPostgresAndS3: two replicas share PostgreSQL and an
// S3 store; both keep re-signing a short-lived timestamp at once, the
// versions they store never collide, and a verifying SDK device and a
// verifying push node, each talking to a different replica than the one
// the operator used, install signed releases and refuse a downgrade.
func TestSignedReleasesOnPostgresAndS3(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	s3 := s3test.Start(t)
	for _, kv := range s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	replica := func() *servertest.Server {
		return servertest.Start(t, servertest.WithDatabase(dsn), servertest.WithPollInterval(500*time.Millisecond), servertest.WithConfig(func(c *server.Config) {
			c.BlobURL, c.PresignDownloads, c.TUFTimestampExpiry = s3.URL(), true, 2*time.Second
		}))
	}
	a, b := replica(), replica()
	op := servertest.SignTenant(a.API)

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	a.API.Upload("fw", "2.0.0", payload, "filename=fw.bin")
	old := make([]byte, 4096)
	rand.Read(old)
	a.API.Upload("fw", "1.0.0", old, "filename=fw.bin")
	op.Sign(b.API, "fw", "2.0.0", "fw.bin", payload)
	op.Sign(a.API, "fw", "1.0.0", "fw.bin", old)

	// Both replicas re-sign every 200ms for a while: one writer per version.
	var before struct{ Versions map[string]int64 }
	a.API.Must(200, "GET", "/api/v1/trust", nil, &before)
	time.Sleep(3 * time.Second)
	var after struct {
		Versions map[string]int64
		Expires  map[string]time.Time
	}
	b.API.Must(200, "GET", "/api/v1/trust", nil, &after)
	if after.Versions["timestamp"] <= before.Versions["timestamp"] || !after.Expires["timestamp"].After(time.Now()) {
		t.Fatalf("timestamp did not move on: %v → %v (expires %v)", before.Versions, after.Versions, after.Expires["timestamp"])
	}

	// An SDK device polls replica B; the release is assigned on A.
	tok := a.API.CreateDevice("sdk-1", nil)
	dir := t.TempDir()
	installed := make(chan string, 2)
	c, err := updater.New(updater.Config{Server: b.URL, ControllerID: "sdk-1", Token: tok, CurrentVersion: "1.5.0", TrustedRoot: op.Root,
		Handler: fileInstaller{dir: dir, done: installed}, StateDir: filepath.Join(dir, "state"),
		FirstCheck: updater.Interval{Max: 100 * time.Millisecond}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	t.Cleanup(c.Stop)
	d := a.API.Assign("sdk-1", "fw", "2.0.0", nil)
	if got := a.API.WaitDeployment("sdk-1", d.ID, 30*time.Second, "succeeded", "failed"); got.State != "succeeded" {
		t.Fatalf("signed release on the SDK device: %+v", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "fw.bin")); string(got) != string(payload) {
		t.Fatal("the SDK device installed other bytes")
	}
	d = b.API.Assign("sdk-1", "fw", "1.0.0", nil)
	if got := b.API.WaitDeployment("sdk-1", d.ID, 30*time.Second, "succeeded", "failed"); got.State != "failed" || !strings.Contains(got.Message, "downgrade refused") {
		t.Fatalf("unsanctioned downgrade on the SDK device: %+v", got)
	}

	// A push node reads the metadata from replica A; replica B pushes
	// (its bytes come from S3, presigned).
	node, err := push.NewNode(push.NodeConfig{StateDir: t.TempDir(), Version: "1.5.0", Logger: slog.New(slog.DiscardHandler),
		TrustedRoot: op.Root, MetadataURL: a.URL + "/default/tuf/",
		Installer: push.InstallerFunc(func(context.Context, push.Artifact, string) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(node)
	t.Cleanup(hs.Close)
	var created struct {
		NodeToken string `json:"node_token"`
	}
	a.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "node-1", "address": hs.URL}, &created)
	for i, version := range []string{"2.0.0", "1.0.0"} {
		uid := fmt.Sprintf("7e8f9a0b-0000-4000-8000-%012d", i)
		b.API.Must(202, "POST", "/api/v1/devices/node-1/updates", map[string]any{"id": uid, "artifact": map[string]string{"name": "fw", "version": version}}, nil)
		servertest.Eventually(t, 30*time.Second, func() error {
			if st := node.Status(); st.ID != uid || !push.Terminal(st.State) {
				return fmt.Errorf("node: %+v", st)
			}
			return nil
		})
	}
	if st := node.Status(); st.Version != "2.0.0" || st.State != push.StateFailed || !strings.Contains(st.Error, "downgrade refused") {
		t.Fatalf("push node after a signed upgrade and an unsanctioned downgrade: %+v", st)
	}
}

// fileInstaller writes the payload into dir under the artifact's name.
type fileInstaller struct {
	updater.DefaultFetcher
	dir  string
	done chan string
}

func (f fileInstaller) Apply(_ context.Context, u *updater.Update, p *updater.Payload) error {
	b, err := os.ReadFile(p.Path)
	if err != nil {
		return err
	}
	f.done <- u.Version
	return os.WriteFile(filepath.Join(f.dir, u.Artifacts[0].Filename), b, 0o644)
}

// TestRepositoryAccess: a tenant's TUF repository is read by its own
// devices (device token, gateway token, anonymously where the tenant
// allows it), its operators (artifacts:read) and its push nodes (the
// capability sent with an update) — and by nobody of another tenant.
func TestRepositoryAccess(t *testing.T) {
	s := servertest.Start(t)
	servertest.SignTenant(s.API)
	s.API.Must(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"}, nil)
	var beta struct{ Token string }
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"tenant": "beta", "scopes": []string{"admin"}}, &beta)
	betaAPI := s.API.As(beta.Token)
	servertest.SignTenant(betaAPI)

	devTok := s.API.CreateDevice("dev-1", nil)
	betaDevTok := betaAPI.CreateDevice("dev-1", nil)
	gw := s.API.GatewayToken()
	var readOnly, noArtifacts struct{ Token string }
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"scopes": []string{"artifacts:read"}}, &readOnly)
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"scopes": []string{"devices:read"}}, &noArtifacts)
	capDefault := s.Srv.Repo.Capability("default", time.Minute)
	capBeta := s.Srv.Repo.Capability("beta", time.Minute)

	get := func(auth string) int {
		req, _ := http.NewRequest("GET", s.URL+"/default/tuf/timestamp.json", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, tc := range map[string]struct {
		auth string
		want int
	}{
		"its device":                  {"TargetToken " + devTok, 200},
		"its gateway":                 {"GatewayToken " + gw, 200},
		"its operator":                {"Bearer " + readOnly.Token, 200},
		"its push node's capability":  {"Bearer " + capDefault, 200},
		"an operator without reads":   {"Bearer " + noArtifacts.Token, 403},
		"another tenant's device":     {"TargetToken " + betaDevTok, 401},
		"another tenant's operator":   {"Bearer " + beta.Token, 401},
		"another tenant's capability": {"Bearer " + capBeta, 401},
		"a forged capability":         {"Bearer " + capDefault[:len(capDefault)-4] + "AAAA", 401},
		"nobody":                      {"", 401},
	} {
		if got := get(tc.auth); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
	s.API.Must(200, "PATCH", "/api/v1/tenants/default", map[string]any{"anonymous_ddi": true}, nil)
	if got := get(""); got != 200 {
		t.Errorf("anonymous, where the tenant allows anonymous devices: %d", got)
	}
}
