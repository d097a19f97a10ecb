package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	_ "modernc.org/sqlite"

	"github.com/flotilla-ota/flotilla/internal/secret"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
)

// signedServer is `flotilla server` as a process on a fixed address, so
// that it can be restarted in place.
type signedServer struct {
	t    *testing.T
	dir  string
	addr string
	args []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startSignedServer(t *testing.T, dir string, args ...string) *signedServer {
	p := &signedServer{t: t, dir: dir, addr: freeAddr(t), args: args}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *signedServer) url() string { return "http://" + p.addr }

func (p *signedServer) start() {
	p.t.Helper()
	args := append([]string{"server", "--listen", p.addr, "--data-dir", p.dir}, p.args...)
	p.cmd = exec.Command(flotillaBinary(p.t), args...)
	if p.log == nil {
		p.log = &bytes.Buffer{}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = append(os.Environ(), "FLOTILLA_CONFIG=", "FLOTILLA_ADMIN_TOKEN="+adminSecret)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	servertest.Eventually(p.t, 20*time.Second, func() error {
		resp, err := http.Get(p.url() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

func (p *signedServer) stop() {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
}

// cli runs the flotilla binary as an operator would, against the server.
func (p *signedServer) cli(args ...string) (string, error) {
	cmd := exec.Command(flotillaBinary(p.t), args...)
	cmd.Env = append(os.Environ(), "FLOTILLA_CONFIG=", "FLOTILLA_SERVER="+p.url(), "FLOTILLA_TOKEN="+adminSecret, "FLOTILLA_CLI_CONFIG="+filepath.Join(p.dir, "cli.json"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *signedServer) mustCLI(args ...string) string {
	p.t.Helper()
	out, err := p.cli(args...)
	if err != nil {
		p.t.Fatalf("flotilla %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// freezeProxy stands between devices and the server. Frozen, it answers
// every timestamp.json request with the last one it passed on: what a man
// in the middle, or a server that stopped re-signing, shows a device.
type freezeProxy struct {
	srv    *httptest.Server
	frozen atomic.Bool
	mu     sync.Mutex
	last   []byte
}

func newFreezeProxy(t *testing.T, to string) *freezeProxy {
	u, _ := url.Parse(to)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &freezeProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/tuf/timestamp.json") {
			rp.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.frozen.Load() && p.last != nil {
			w.Write(p.last)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code == 200 {
			p.last = rec.Body.Bytes()
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// capture passes the server's current timestamp through the proxy.
func (p *freezeProxy) capture(t *testing.T, token string) {
	req, _ := http.NewRequest("GET", p.srv.URL+"/default/tuf/timestamp.json", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("capture timestamp: %v %v", resp, err)
	}
	resp.Body.Close()
}

// frozenExpiry is when the timestamp the proxy replays expires.
func (p *freezeProxy) frozenExpiry(t *testing.T) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m struct {
		Signed struct{ Expires time.Time } `json:"signed"`
	}
	if err := json.Unmarshal(p.last, &m); err != nil {
		t.Fatalf("frozen timestamp: %v", err)
	}
	return m.Signed.Expires
}

type signedFleet struct {
	t      *testing.T
	srv    *signedServer
	api    *servertest.API
	proxy  *freezeProxy
	dir    string
	keys   string
	pinned string
	files  map[string][]byte
}

// release uploads NAME VERSION with random bytes, through the CLI.
func (f *signedFleet) release(name, version string) []byte {
	f.t.Helper()
	b := make([]byte, 64<<10)
	rand.Read(b)
	copy(b, name+" "+version+"\n")
	path := filepath.Join(f.dir, name+"-"+version+".bin")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.srv.mustCLI("artifact", "push", path, "--name", name, "--version", version, "--filename", "fw.bin")
	f.files[version] = b
	return b
}

func (f *signedFleet) sign(version string, extra ...string) {
	f.t.Helper()
	f.srv.mustCLI(append([]string{"release", "sign", "fw", version, "--keys", f.keys, "--file", filepath.Join(f.dir, "fw-"+version+".bin")}, extra...)...)
}

type deployment struct {
	ID      int64
	State   string
	Message string
}

// assign gives device one release and waits for the outcome.
func (f *signedFleet) assign(device, version string) deployment {
	f.t.Helper()
	var d deployment
	f.api.Must(201, "POST", "/api/v1/devices/"+device+"/deployments", map[string]any{"artifact": map[string]string{"name": "fw", "version": version}}, &d)
	return f.wait(device, d.ID)
}

func (f *signedFleet) wait(device string, id int64) deployment {
	f.t.Helper()
	var d deployment
	servertest.Eventually(f.t, 30*time.Second, func() error {
		f.api.Must(200, "GET", fmt.Sprintf("/api/v1/devices/%s/deployments/%d", device, id), nil, &d)
		if d.State != "succeeded" && d.State != "failed" {
			return fmt.Errorf("deployment %d of %s is %s", id, device, d.State)
		}
		return nil
	})
	return d
}

// refused checks that a deployment failed for the reason given and the
// device still runs version.
func (f *signedFleet) refused(d deployment, device, reason, version string) {
	f.t.Helper()
	if d.State != "failed" || !strings.Contains(d.Message, "signature check failed") || !strings.Contains(d.Message, reason) {
		f.t.Fatalf("deployment %d of %s: %s %q, want failed for %q", d.ID, device, d.State, d.Message, reason)
	}
	if got, _ := os.ReadFile(filepath.Join(f.dir, device+".bin")); !bytes.Equal(got, f.files[version]) {
		f.t.Fatalf("%s no longer runs %s after a refused update", device, version)
	}
	f.t.Logf("%s refused: %s", device, d.Message)
}

func (f *signedFleet) runs(device, version string) {
	f.t.Helper()
	if got, _ := os.ReadFile(filepath.Join(f.dir, device+".bin")); !bytes.Equal(got, f.files[version]) {
		f.t.Fatalf("%s does not run %s", device, version)
	}
}

// TestSignedReleasesEndToEnd: the operator signs releases offline with the
// real binary; agents pinned to root version 1 verify and install them,
// follow two key rotations, and refuse every attack on the way with a
// failed deployment that names the reason, still running what they ran.
func TestSignedReleasesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	srv := startSignedServer(t, filepath.Join(dir, "data"), "--poll-interval", "1s", "--tuf-timestamp-expiry", "8s")
	f := &signedFleet{t: t, srv: srv, dir: dir, keys: filepath.Join(dir, "keys"), files: map[string][]byte{},
		api: &servertest.API{T: t, Base: srv.url(), Token: adminSecret}, proxy: newFreezeProxy(t, srv.url())}

	f.release("fw", "2.0.0")
	out := srv.mustCLI("trust", "init", "--keys", f.keys)
	if !strings.Contains(out, "Tenant signed") {
		t.Fatalf("trust init said:\n%s", out)
	}
	f.pinned = filepath.Join(dir, "pinned-root.json")
	b, _ := os.ReadFile(filepath.Join(f.keys, "root.json"))
	os.WriteFile(f.pinned, b, 0o644)
	for _, k := range []string{"root.key", "targets.key"} {
		if st, err := os.Stat(filepath.Join(f.keys, k)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", k, st.Mode(), err)
		}
	}

	// An unsigned release cannot be rolled out.
	body := srv.mustNot(t, f.api, "POST", "/api/v1/rollouts", map[string]any{"name": "r", "artifact": map[string]string{"name": "fw", "version": "2.0.0"}, "selector": "fleet=signed", "allow_empty": true, "start": true}, 409)
	if !strings.Contains(string(body), "flotilla release sign fw 2.0.0") {
		t.Fatalf("409 does not say how to sign: %s", body)
	}
	f.sign("2.0.0")

	// Two agents pinned to root v1, through the proxy.
	for _, id := range []string{"dev-a", "dev-b"} {
		tok := f.api.CreateDevice(id, map[string]string{"fleet": "signed"})
		os.WriteFile(filepath.Join(dir, id+".bin"), []byte("factory image"), 0o644)
		startSignedAgent(t, f.proxy.srv.URL, id, tok, filepath.Join(dir, id+".bin"), filepath.Join(dir, id), f.pinned)
	}
	f.rollout("2.0.0")
	f.runs("dev-a", "2.0.0")

	// Rotations: a new root key, then a new targets key (root v3); the
	// fleet, pinned to v1, keeps updating.
	srv.mustCLI("trust", "rotate", "--keys", f.keys, "--role", "root")
	srv.mustCLI("trust", "rotate", "--keys", f.keys, "--role", "targets")
	var st struct{ Versions map[string]int64 }
	f.api.Must(200, "GET", "/api/v1/trust", nil, &st)
	if st.Versions["root"] != 3 {
		t.Fatalf("root version %d after two rotations", st.Versions["root"])
	}
	f.release("fw", "2.1.0")
	f.sign("2.1.0")
	f.rollout("2.1.0")
	f.runs("dev-b", "2.1.0")
	// A root signed with the removed key is refused.
	f.rootByRetiredKey()

	// 1. A compromised server swaps a signed release's bytes and hashes.
	f.release("fw", "3.0.0")
	f.sign("3.0.0")
	f.tamperBytes("3.0.0")
	f.refused(f.assign("dev-a", "3.0.0"), "dev-a", "not the signed ones", "2.1.0")

	// 2. An unsigned release assigned by writing the database.
	f.release("fw", "4.0.0")
	f.assignBehindTheAPI("dev-a", "4.0.0")

	// 3. A signed downgrade without the operator's sanction; with it, it
	// installs.
	f.release("fw", "1.5.0")
	f.sign("1.5.0")
	f.refused(f.assign("dev-a", "1.5.0"), "dev-a", "downgrade refused", "2.1.0")
	f.sign("1.5.0", "--allow-downgrade")
	if d := f.assign("dev-b", "1.5.0"); d.State != "succeeded" {
		t.Fatalf("sanctioned downgrade: %+v", d)
	}
	f.runs("dev-b", "1.5.0")

	// 5. Targets rolled back to an older signed version, with a snapshot
	// and timestamp signed by the server's own (stolen) online keys.
	f.release("fw", "5.0.0")
	f.sign("5.0.0")
	f.rollBackTargets()
	f.refused(f.assign("dev-a", "5.0.0"), "dev-a", "rolled back", "2.1.0")
	f.sign("5.0.0") // the operator signs again: the server is current again

	// 4. A frozen view: the timestamp a device last saw, replayed until
	// past its expiry.
	f.proxy.capture(t, adminSecret)
	f.proxy.frozen.Store(true)
	exp := f.proxy.frozenExpiry(t)
	time.Sleep(time.Until(exp) + time.Second)
	f.refused(f.assign("dev-a", "5.0.0"), "dev-a", "expired", "2.1.0")
	f.proxy.frozen.Store(false)
	if d := f.assign("dev-a", "5.0.0"); d.State != "succeeded" {
		t.Fatalf("after the freeze: %+v", d)
	}
	f.runs("dev-a", "5.0.0")
}

func (p *signedServer) mustNot(t *testing.T, api *servertest.API, method, path string, body any, want int) []byte {
	t.Helper()
	code, b := api.Do(method, path, body)
	if code != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	return b
}

func (f *signedFleet) rollout(version string) {
	f.t.Helper()
	var ro struct{ ID, Status string }
	f.api.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "fw " + version, "artifact": map[string]string{"name": "fw", "version": version},
		"selector": "fleet=signed", "start": true}, &ro)
	servertest.Eventually(f.t, 30*time.Second, func() error {
		f.api.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout of %s is %s", version, ro.Status)
		}
		return nil
	})
	f.runs("dev-a", version)
	f.runs("dev-b", version)
}

func startSignedAgent(t *testing.T, server, id, token, target, state, root string) {
	cmd := exec.Command(flotillaBinary(t), "agent", "--server", server, "--device-id", id, "--token", token, "--target", target,
		"--state-dir", state, "--current-version", "1.0.0", "--first-check", "50ms", "--trust", root, "--log-level", "debug")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Env = append(os.Environ(), "FLOTILLA_CONFIG=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", id, log.String())
		}
	})
}

// rootByRetiredKey: the root key retired by the rotation signs a root v4
// that gives the root role back to it; the server refuses it.
func (f *signedFleet) rootByRetiredKey() {
	f.t.Helper()
	old, err := tufrepo.ReadKey(filepath.Join(f.keys, "root.key.retired-1"))
	if err != nil {
		f.t.Fatal(err)
	}
	var raw json.RawMessage
	f.api.Must(200, "GET", "/api/v1/trust/metadata/root.json", nil, &raw)
	cur, err := metadata.Root().FromBytes(raw)
	if err != nil {
		f.t.Fatal(err)
	}
	next, _ := tufrepo.NextRoot(cur, time.Now().Add(time.Hour))
	tufrepo.ReplaceKey(next, tufrepo.Root, tufrepo.PublicKey(old))
	next.Sign(tufrepo.Signer(old))
	b, _ := next.ToBytes(false)
	code, body := f.api.Do("POST", "/api/v1/trust/metadata", map[string]json.RawMessage{"root": b})
	if code != 400 || !strings.Contains(string(body), "not signed by the keys of root version 3") {
		f.t.Fatalf("root signed by a removed key: %d %s", code, body)
	}
}

func (f *signedFleet) db() *sql.DB {
	f.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(f.srv.dir, "flotilla.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { db.Close() })
	return db
}

// tamperBytes: the attacker writes other bytes into the blob store and
// their hashes into the database, so the server serves them consistently.
func (f *signedFleet) tamperBytes(version string) {
	f.t.Helper()
	evil := bytes.Repeat([]byte("evil firmware\n"), 4000)
	s256, s1, m5 := sha256.Sum256(evil), sha1.Sum(evil), md5.Sum(evil)
	key := hex.EncodeToString(s256[:])
	path := filepath.Join(f.srv.dir, "blobs", "objects", key[:2], key)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, evil, 0o644); err != nil {
		f.t.Fatal(err)
	}
	db := f.db()
	if _, err := db.Exec(`UPDATE artifacts SET sha256 = ?, sha1 = ?, md5 = ?, size = ? WHERE name = 'fw' AND version = ?`,
		key, hex.EncodeToString(s1[:]), hex.EncodeToString(m5[:]), len(evil), version); err != nil {
		f.t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE module_files SET sha256 = ?, sha1 = ?, md5 = ?, size = ? WHERE module_id IN (SELECT id FROM modules WHERE name = 'fw' AND version = ?)`,
		key, hex.EncodeToString(s1[:]), hex.EncodeToString(m5[:]), len(evil), version); err != nil {
		f.t.Fatal(err)
	}
}

// assignBehindTheAPI writes a deployment of an unsigned release straight
// into the database, then restarts the server (so nothing it cached hides
// the new row), and waits for the device's answer.
func (f *signedFleet) assignBehindTheAPI(device, version string) {
	f.t.Helper()
	var artifactID int64
	db := f.db()
	if err := db.QueryRow(`SELECT id FROM artifacts WHERE name = 'fw' AND version = ?`, version).Scan(&artifactID); err != nil {
		f.t.Fatal(err)
	}
	now := time.Now().UnixMicro()
	res, err := db.Exec(`INSERT INTO deployments (tenant, device_id, artifact_id, artifact_name, artifact_version, type, delivery, state, created_at, updated_at, started_at)
		VALUES ('default', ?, ?, 'fw', ?, 'forced', 'pull', 'pending', ?, ?, ?)`, device, artifactID, version, now, now, now)
	if err != nil {
		f.t.Fatal(err)
	}
	id, _ := res.LastInsertId()
	db.Close()
	f.srv.stop()
	f.srv.start()
	f.refused(f.wait(device, id), device, "not signed", "2.1.0")
}

// rollBackTargets: with the database and the server's secret key, the
// attacker signs a new snapshot and timestamp (the online keys are the
// server's) that name targets version 1 again.
func (f *signedFleet) rollBackTargets() {
	f.t.Helper()
	key, err := os.ReadFile(filepath.Join(f.srv.dir, "secret.key"))
	if err != nil {
		f.t.Fatal(err)
	}
	k, err := secret.ParseKey(strings.TrimSpace(string(key)))
	if err != nil {
		f.t.Fatal(err)
	}
	box, _ := secret.New(k)
	db := f.db()
	signer := func(role string) ed25519.PrivateKey {
		var sealed string
		if err := db.QueryRow(`SELECT private FROM tuf_keys WHERE tenant = 'default' AND role = ?`, role).Scan(&sealed); err != nil {
			f.t.Fatal(err)
		}
		seed, err := box.Open(sealed, "tuf-key/default/"+role)
		if err != nil {
			f.t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(seed)
		return ed25519.NewKeyFromSeed(raw)
	}
	next := func(role string) int64 {
		var v int64
		db.QueryRow(`SELECT MAX(version) FROM tuf_metadata WHERE tenant = 'default' AND role = ?`, role).Scan(&v)
		return v + 1
	}
	// As long-lived as the server's own, so that it does not renew them.
	exp := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Second)
	snap := metadata.Snapshot(exp)
	snap.Signed.Version = next("snapshot")
	snap.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	snap.Sign(tufrepo.Signer(signer("snapshot")))
	sb, _ := snap.ToBytes(false)
	ts := metadata.Timestamp(exp)
	ts.Signed.Version = next("timestamp") + 100 // ahead of the server's re-signing
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(snap.Signed.Version)
	ts.Sign(tufrepo.Signer(signer("timestamp")))
	tb, _ := ts.ToBytes(false)
	now := time.Now().UnixMicro()
	for _, m := range []struct {
		role string
		v    int64
		b    []byte
	}{{"snapshot", snap.Signed.Version, sb}, {"timestamp", ts.Signed.Version, tb}} {
		if _, err := db.Exec(`INSERT INTO tuf_metadata (tenant, role, version, body, expires_at, created_at) VALUES ('default', ?, ?, ?, ?, ?)`,
			m.role, m.v, string(m.b), exp.UnixMicro(), now); err != nil {
			f.t.Fatal(err)
		}
	}
}
