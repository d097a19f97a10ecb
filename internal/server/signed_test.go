package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/flotilla-ota/flotilla/internal/blob/s3/s3test"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/storetest"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
	"github.com/flotilla-ota/flotilla/push"
	"github.com/flotilla-ota/flotilla/updater"
)

// operator holds the offline keys and signs through the management API.
type operator struct {
	t       *testing.T
	api     *servertest.API
	rootKey ed25519.PrivateKey
	tgtKey  ed25519.PrivateKey
	root    []byte
	targets *metadata.Metadata[metadata.TargetsType]
}

func newOperator(t *testing.T, api *servertest.API) *operator {
	o := &operator{t: t, api: api}
	o.rootKey, _ = tufrepo.GenerateKey()
	o.tgtKey, _ = tufrepo.GenerateKey()
	var st struct{ OnlineKeys map[string]json.RawMessage `json:"online_keys"` }
	api.Must(200, "GET", "/api/v1/trust", nil, &st)
	var snap, ts metadata.Key
	json.Unmarshal(st.OnlineKeys["snapshot"], &snap)
	json.Unmarshal(st.OnlineKeys["timestamp"], &ts)
	root := tufrepo.NewRoot(o.rootKey, o.tgtKey, &snap, &ts, time.Now().Add(24*time.Hour))
	root.Sign(tufrepo.Signer(o.rootKey))
	o.root, _ = root.ToBytes(false)
	o.targets, _ = tufrepo.NextTargets(nil, time.Now().Add(24*time.Hour))
	o.targets.Sign(tufrepo.Signer(o.tgtKey))
	tb, _ := o.targets.ToBytes(false)
	api.Must(200, "POST", "/api/v1/trust/metadata", map[string]json.RawMessage{"root": o.root, "targets": tb}, nil)
	return o
}

// sign adds name/version/filename with these bytes to the targets.
func (o *operator) sign(api *servertest.API, name, version, filename string, data []byte) {
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	tf, err := tufrepo.NewTarget(int64(len(data)), hex.EncodeToString(s256[:]), hex.EncodeToString(s512[:]), tufrepo.Custom{Name: name, Version: version})
	if err != nil {
		o.t.Fatal(err)
	}
	next, _ := tufrepo.NextTargets(o.targets, time.Now().Add(24*time.Hour))
	next.Signed.Targets[name+"/"+version+"/"+filename] = tf
	next.Sign(tufrepo.Signer(o.tgtKey))
	tb, _ := next.ToBytes(false)
	api.Must(200, "POST", "/api/v1/trust/metadata", map[string]json.RawMessage{"targets": tb}, nil)
	o.targets = next
}

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
	op := newOperator(t, a.API)

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	a.API.Upload("fw", "2.0.0", payload, "filename=fw.bin")
	old := make([]byte, 4096)
	rand.Read(old)
	a.API.Upload("fw", "1.0.0", old, "filename=fw.bin")
	op.sign(b.API, "fw", "2.0.0", "fw.bin", payload)
	op.sign(a.API, "fw", "1.0.0", "fw.bin", old)

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
	c, err := updater.New(updater.Config{Server: b.URL, ControllerID: "sdk-1", Token: tok, CurrentVersion: "1.5.0", TrustedRoot: op.root,
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
		TrustedRoot: op.root, MetadataURL: a.URL + "/default/tuf/",
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
