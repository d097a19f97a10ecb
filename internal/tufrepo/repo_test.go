package tufrepo_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/blob"
	"github.com/flotilla-ota/flotilla/internal/blob/disk"
	"github.com/flotilla-ota/flotilla/internal/secret"
	"github.com/flotilla-ota/flotilla/internal/sqlite"
	"github.com/flotilla-ota/flotilla/internal/sqlstore"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
	"github.com/flotilla-ota/flotilla/tuf"
)

// fixture is a repository served over HTTP as devices see it, with the
// operator's offline keys.
type fixture struct {
	t       testing.TB
	ctx     context.Context
	st      *sqlstore.Store
	blobs   blob.Store
	box     *secret.Box
	repo    *tufrepo.Repo
	now     time.Time
	url     string
	rootKey ed25519.PrivateKey
	tgtKey  ed25519.PrivateKey
	root    *metadata.Metadata[metadata.RootType]
	targets *metadata.Metadata[metadata.TargetsType]
	files   map[string][]byte // artifact bytes by name/version
	// serve, if set, replaces what the server answers for a file.
	serve map[string][]byte
}

func newFixture(t testing.TB) *fixture {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := disk.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := secret.ParseKey(secret.NewKey())
	box, _ := secret.New(key)
	f := &fixture{t: t, ctx: ctx, st: st, blobs: blobs, box: box, now: time.Now(), files: map[string][]byte{}, serve: map[string][]byte{}}
	f.repo = tufrepo.New(st, blobs, box, func() time.Time { return f.now }, tufrepo.Config{TimestampExpiry: time.Hour}, nil)
	if err := st.CreateTenant(ctx, flotilla.Tenant{Name: "acme", CreatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/acme/tuf/")
		if b, ok := f.serve[name]; ok {
			w.Write(b)
			return
		}
		b, err := f.repo.File(r.Context(), "acme", name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/acme/tuf/"
	f.rootKey, _ = tufrepo.GenerateKey()
	f.tgtKey, _ = tufrepo.GenerateKey()
	return f
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// init does what `flotilla trust init` does.
func (f *fixture) init() {
	snap, ts, err := f.repo.OnlineKeys(f.ctx, "acme")
	f.must(err)
	f.root = tufrepo.NewRoot(f.rootKey, f.tgtKey, snap, ts, f.now.Add(365*24*time.Hour))
	_, err = f.root.Sign(tufrepo.Signer(f.rootKey))
	f.must(err)
	f.targets, _ = tufrepo.NextTargets(nil, f.now.Add(365*24*time.Hour))
	_, err = f.targets.Sign(tufrepo.Signer(f.tgtKey))
	f.must(err)
	f.must(f.repo.Publish(f.ctx, "acme", bytesOf(f.t, f.root), bytesOf(f.t, f.targets)))
}

func bytesOf[T metadata.Roles](t testing.TB, m *metadata.Metadata[T]) []byte {
	b, err := m.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upload stores an artifact's bytes and record.
func (f *fixture) upload(name, version string, data []byte) flotilla.Artifact {
	info, err := f.blobs.Put(f.ctx, bytes.NewReader(data), blob.PutOptions{})
	f.must(err)
	a := flotilla.Artifact{Tenant: "acme", Name: name, Version: version, Filename: name + ".bin", Type: "binary", Size: info.Size, SHA256: info.Key, CreatedAt: f.now}
	f.must(f.st.CreateArtifact(f.ctx, &a))
	f.files[name+"/"+version] = data
	return a
}

// sign does what `flotilla release sign` does; it returns the targets
// bytes it published.
func (f *fixture) sign(a flotilla.Artifact, allowDowngrade bool) []byte {
	data := f.files[a.Name+"/"+a.Version]
	s512 := sha512.Sum512(data)
	tf, err := tufrepo.NewTarget(a.Size, a.SHA256, hex.EncodeToString(s512[:]), tufrepo.Custom{Name: a.Name, Version: a.Version, Type: a.Type, AllowDowngrade: allowDowngrade})
	f.must(err)
	next, err := tufrepo.NextTargets(f.targets, f.now.Add(365*24*time.Hour))
	f.must(err)
	next.Signed.Targets[tufrepo.TargetPath(a)] = tf
	_, err = next.Sign(tufrepo.Signer(f.tgtKey))
	f.must(err)
	b := bytesOf(f.t, next)
	f.must(f.repo.Publish(f.ctx, "acme", nil, b))
	f.targets = next
	return b
}

func (f *fixture) device(dir string) *tuf.Verifier {
	v, err := tuf.New(tuf.Config{Root: bytesOf(f.t, f.root), MetadataURL: f.url, Dir: dir, Now: func() time.Time { return f.now }})
	f.must(err)
	return v
}

func TestSignedReleaseVerifies(t *testing.T) {
	f := newFixture(t)
	a := f.upload("fw", "2.0.0", []byte(strings.Repeat("firmware 2.0.0\n", 1000)))
	// Before trust init the tenant is unsigned: anything may be deployed.
	f.must(f.repo.CheckRelease(f.ctx, "acme", a))
	f.init()
	if err := f.repo.CheckRelease(f.ctx, "acme", a); !flotilla.IsCode(err, flotilla.EConflict) || !strings.Contains(err.Error(), "flotilla release sign fw 2.0.0") {
		t.Fatalf("an unsigned release in a signed tenant: %v", err)
	}
	f.sign(a, false)
	f.must(f.repo.CheckRelease(f.ctx, "acme", a))

	dev := f.device(t.TempDir())
	tgt, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin")
	f.must(err)
	if tgt.Length != a.Size || tgt.Hashes["sha256"] != a.SHA256 || len(tgt.Hashes["sha512"]) != 128 || tgt.Custom.Version != "2.0.0" {
		t.Fatalf("target = %+v", tgt)
	}
	f.must(tgt.Check(bytes.NewReader(f.files["fw/2.0.0"])))
	if err := tgt.Check(strings.NewReader(strings.Repeat("firmware 2.0.0\n", 999) + "evil firmware!\n")); !errors.Is(err, tuf.ErrMismatch) {
		t.Fatalf("other bytes of the same length: %v", err)
	}
	if err := tgt.CheckVersion("1.0.0"); err != nil {
		t.Fatalf("upgrade refused: %v", err)
	}
	if err := tgt.CheckVersion("3.0.0"); !errors.Is(err, tuf.ErrDowngrade) {
		t.Fatalf("downgrade: %v", err)
	}
	if _, err := dev.Target(f.ctx, "fw/9.9.9/fw.bin"); !errors.Is(err, tuf.ErrNotSigned) {
		t.Fatalf("unsigned target: %v", err)
	}
	st, err := f.repo.Status(f.ctx, "acme")
	f.must(err)
	if !st.Signed || st.Versions["targets"] != 2 || st.Versions["snapshot"] != 2 || st.Releases != 1 {
		t.Fatalf("status = %+v", st)
	}
}

func TestRepositoryRefusesBadMetadata(t *testing.T) {
	f := newFixture(t)
	a := f.upload("fw", "2.0.0", []byte("firmware 2.0.0"))
	f.upload("fw", "2.0.1", []byte("firmware 2.0.1"))
	// Targets before any root.
	tg, _ := tufrepo.NextTargets(nil, f.now.Add(time.Hour))
	tg.Sign(tufrepo.Signer(f.tgtKey))
	if err := f.repo.Publish(f.ctx, "acme", nil, bytesOf(t, tg)); !flotilla.IsCode(err, flotilla.EConflict) {
		t.Fatalf("targets without a root: %v", err)
	}
	// A root that does not name the server's online keys.
	other, _ := tufrepo.GenerateKey()
	bad := tufrepo.NewRoot(f.rootKey, f.tgtKey, tufrepo.PublicKey(other), tufrepo.PublicKey(other), f.now.Add(time.Hour))
	bad.Sign(tufrepo.Signer(f.rootKey))
	if err := f.repo.Publish(f.ctx, "acme", bytesOf(t, bad), nil); !flotilla.IsCode(err, flotilla.EInvalid) || !strings.Contains(err.Error(), "online key") {
		t.Fatalf("root without the online keys: %v", err)
	}
	f.init()

	signWith := func(k ed25519.PrivateKey, edit func(*metadata.Metadata[metadata.TargetsType])) []byte {
		next, _ := tufrepo.NextTargets(f.targets, f.now.Add(time.Hour))
		edit(next)
		next.Sign(tufrepo.Signer(k))
		return bytesOf(t, next)
	}
	good, _ := tufrepo.NewTarget(a.Size, a.SHA256, "", tufrepo.Custom{Name: "fw", Version: "2.0.0"})
	for name, tc := range map[string]struct {
		body []byte
		want string
	}{
		"signed by the root key": {signWith(f.rootKey, func(m *metadata.Metadata[metadata.TargetsType]) { m.Signed.Targets["fw/2.0.0/fw.bin"] = good }), "not signed by the targets keys"},
		"a version skipped":      {signWith(f.tgtKey, func(m *metadata.Metadata[metadata.TargetsType]) { m.Signed.Version = 5 }), "next version is 2"},
		"an old version":         {bytesOf(t, f.targets), "next version is 2"},
		"expired":                {signWith(f.tgtKey, func(m *metadata.Metadata[metadata.TargetsType]) { m.Signed.Expires = f.now.Add(-time.Minute) }), "expired"},
		"a wrong length": {signWith(f.tgtKey, func(m *metadata.Metadata[metadata.TargetsType]) {
			w, _ := tufrepo.NewTarget(a.Size+1, a.SHA256, "", tufrepo.Custom{})
			m.Signed.Targets["fw/2.0.0/fw.bin"] = w
		}), "length"},
		"another artifact's hash": {signWith(f.tgtKey, func(m *metadata.Metadata[metadata.TargetsType]) {
			s := sha256.Sum256([]byte("firmware 2.0.1"))
			w, _ := tufrepo.NewTarget(a.Size, hex.EncodeToString(s[:]), "", tufrepo.Custom{})
			m.Signed.Targets["fw/2.0.0/fw.bin"] = w
		}), "sha256"},
		"a wrong sha512": {signWith(f.tgtKey, func(m *metadata.Metadata[metadata.TargetsType]) {
			w, _ := tufrepo.NewTarget(a.Size, a.SHA256, strings.Repeat("ab", 64), tufrepo.Custom{})
			m.Signed.Targets["fw/2.0.0/fw.bin"] = w
		}), "sha512"},
		"no such artifact":  {signWith(f.tgtKey, func(m *metadata.Metadata[metadata.TargetsType]) { m.Signed.Targets["fw/3.0.0/fw.bin"] = good }), "no artifact fw 3.0.0"},
		"a wrong file name": {signWith(f.tgtKey, func(m *metadata.Metadata[metadata.TargetsType]) { m.Signed.Targets["fw/2.0.0/other.bin"] = good }), "fw/2.0.0/fw.bin"},
	} {
		if err := f.repo.Publish(f.ctx, "acme", nil, tc.body); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, tc.want)
		}
	}
	if v, _ := f.st.LatestTrustVersion(f.ctx, "acme", "targets"); v != 1 {
		t.Fatalf("a refused upload changed the targets version to %d", v)
	}
}

// TestDeviceRefusesAttacks: what a compromised server (or a man in the
// middle) can serve, and the device refusing each.
func TestDeviceRefusesAttacks(t *testing.T) {
	f := newFixture(t)
	a := f.upload("fw", "2.0.0", []byte("firmware 2.0.0"))
	f.init()
	oldTargets := bytesOf(t, f.targets)
	f.sign(a, false)
	dir := t.TempDir()
	dev := f.device(dir)
	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); err != nil {
		t.Fatal(err)
	}

	// Targets v1 served as v2 (to a device that has not cached v2): its
	// version is not the snapshot's.
	f.serve["2.targets.json"] = oldTargets
	if _, err := f.device(t.TempDir()).Target(f.ctx, "fw/2.0.0/fw.bin"); !errors.Is(err, tuf.ErrMetadata) {
		t.Fatalf("old targets under the new name: %v", err)
	}
	delete(f.serve, "2.targets.json")

	// A server that is owned signs, with its own online keys, a snapshot
	// naming the targets of before the release: a rollback.
	exp := f.now.Add(time.Hour)
	old := metadata.Snapshot(exp)
	old.Signed.Version = 3
	old.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	old.Sign(tufrepo.Signer(f.stolenKey("snapshot")))
	stale := metadata.Timestamp(exp)
	stale.Signed.Version = 50
	stale.Signed.Meta["snapshot.json"] = metadata.MetaFile(3)
	stale.Sign(tufrepo.Signer(f.stolenKey("timestamp")))
	f.serve["timestamp.json"], f.serve["3.snapshot.json"], f.serve["1.targets.json"] = bytesOf(t, stale), bytesOf(t, old), oldTargets
	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); !errors.Is(err, tuf.ErrMetadata) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("targets rolled back by the server's own keys: %v", err)
	}
	clear(f.serve)
	dir = t.TempDir() // the device above now trusts the attacker's timestamp version
	dev = f.device(dir)

	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); err != nil {
		t.Fatal(err)
	}
	snap, _ := f.repo.File(f.ctx, "acme", "snapshot.json")
	ts, _ := f.repo.File(f.ctx, "acme", "timestamp.json")
	// Time passes; the server re-signs its timestamp.
	f.now = f.now.Add(40 * time.Minute)
	f.must(f.repo.Refresh(f.ctx))
	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); err != nil {
		t.Fatalf("after re-signing: %v", err)
	}
	// A replay of the first view (valid signatures, lower versions).
	f.serve["timestamp.json"], f.serve["snapshot.json"] = ts, snap
	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); !errors.Is(err, tuf.ErrMetadata) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("replayed timestamp: %v", err)
	}
	// A fresh device would accept the replay until it expires: a freeze.
	f.now = f.now.Add(2 * time.Hour)
	if _, err := f.device(t.TempDir()).Target(f.ctx, "fw/2.0.0/fw.bin"); !errors.Is(err, tuf.ErrMetadata) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired timestamp: %v", err)
	}
	clear(f.serve)
	// A server that stopped re-signing is no better.
	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); !errors.Is(err, tuf.ErrMetadata) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("stale timestamp: %v", err)
	}
	f.must(f.repo.Refresh(f.ctx))
	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); err != nil {
		t.Fatalf("after re-signing again: %v", err)
	}
	// The trusted state survives a restart of the device.
	if _, err := os.Stat(filepath.Join(dir, "timestamp.json")); err != nil {
		t.Fatalf("trusted timestamp not kept: %v", err)
	}
}

// TestRootRotation: devices that pinned root v1 follow v2 and v3 (root key
// and targets key rotated); a root signed by a removed key is refused.
func TestRootRotation(t *testing.T) {
	f := newFixture(t)
	f.init()
	dev := f.device(t.TempDir())
	v1 := f.rootKey
	a := f.upload("fw", "2.0.0", []byte("firmware 2.0.0"))
	f.sign(a, false)
	if _, err := dev.Target(f.ctx, "fw/2.0.0/fw.bin"); err != nil {
		t.Fatal(err)
	}
	// v2: a new root key, signed by the old and the new.
	k2, _ := tufrepo.GenerateKey()
	r2, _ := tufrepo.NextRoot(f.root, f.now.Add(365*24*time.Hour))
	f.must(tufrepo.ReplaceKey(r2, tufrepo.Root, tufrepo.PublicKey(k2)))
	r2.Sign(tufrepo.Signer(v1))
	// Signed by the new key alone it is refused.
	if err := f.repo.Publish(f.ctx, "acme", bytesOf(t, signedCopy(t, r2, k2)), nil); err == nil {
		t.Fatal("a root not signed by the previous root's key was accepted")
	}
	r2.Sign(tufrepo.Signer(k2))
	f.must(f.repo.Publish(f.ctx, "acme", bytesOf(t, r2), nil))
	f.root, f.rootKey = r2, k2
	// v3: a new targets key; the current targets must be re-signed with
	// it in the same request.
	t3, _ := tufrepo.GenerateKey()
	r3, _ := tufrepo.NextRoot(f.root, f.now.Add(365*24*time.Hour))
	f.must(tufrepo.ReplaceKey(r3, tufrepo.Targets, tufrepo.PublicKey(t3)))
	r3.Sign(tufrepo.Signer(k2))
	if err := f.repo.Publish(f.ctx, "acme", bytesOf(t, r3), nil); !flotilla.IsCode(err, flotilla.EConflict) {
		t.Fatalf("targets key rotated without re-signed targets: %v", err)
	}
	next, _ := tufrepo.NextTargets(f.targets, f.now.Add(365*24*time.Hour))
	next.Sign(tufrepo.Signer(t3))
	f.must(f.repo.Publish(f.ctx, "acme", bytesOf(t, r3), bytesOf(t, next)))
	f.root, f.tgtKey, f.targets = r3, t3, next
	b := f.upload("fw", "2.1.0", []byte("firmware 2.1.0"))
	f.sign(b, false)
	tgt, err := dev.Target(f.ctx, "fw/2.1.0/fw.bin")
	if err != nil {
		t.Fatalf("a device pinned to root v1 after two rotations: %v", err)
	}
	if tgt.Custom.Version != "2.1.0" {
		t.Fatalf("target = %+v", tgt)
	}
	// v4 signed with the removed v1 key: the server refuses it, and a
	// device that is served it anyway refuses it too.
	r4, _ := tufrepo.NextRoot(f.root, f.now.Add(365*24*time.Hour))
	f.must(tufrepo.ReplaceKey(r4, tufrepo.Root, tufrepo.PublicKey(v1)))
	r4.Sign(tufrepo.Signer(v1))
	if err := f.repo.Publish(f.ctx, "acme", bytesOf(t, r4), nil); !flotilla.IsCode(err, flotilla.EInvalid) {
		t.Fatalf("root signed by a removed key: %v", err)
	}
	f.serve["4.root.json"] = bytesOf(t, r4)
	if _, err := dev.Target(f.ctx, "fw/2.1.0/fw.bin"); !errors.Is(err, tuf.ErrMetadata) {
		t.Fatalf("device served a root signed by a removed key: %v", err)
	}
}

func signedCopy(t *testing.T, r *metadata.Metadata[metadata.RootType], k ed25519.PrivateKey) *metadata.Metadata[metadata.RootType] {
	c, _ := metadata.Root().FromBytes(bytesOf(t, r))
	c.ClearSignatures()
	c.Sign(tufrepo.Signer(k))
	return c
}

// stolenKey is one of the server's online keys, as an attacker who owns
// the server (its database and its secret key) has it.
func (f *fixture) stolenKey(role string) ed25519.PrivateKey {
	keys, err := f.st.TrustKeys(f.ctx, "acme")
	f.must(err)
	for _, k := range keys {
		if k.Role == role {
			seed, err := f.box.Open(k.PrivateSealed, "tuf-key/acme/"+role)
			f.must(err)
			raw, _ := base64.StdEncoding.DecodeString(seed)
			return ed25519.NewKeyFromSeed(raw)
		}
	}
	f.t.Fatalf("no %s key", role)
	return nil
}
