package tufrepo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Publish stores a new root, a new targets, or both at once (a rotated
// targets key needs both), after checking them as a device would, and
// signs the snapshot and timestamp that make them current.
func (r *Repo) Publish(ctx context.Context, tenant string, rootJSON, targetsJSON []byte) error {
	if rootJSON == nil && targetsJSON == nil {
		return flotilla.Errorf(flotilla.EInvalid, "send root, targets, or both")
	}
	r.publish.Lock()
	defer r.publish.Unlock()
	keys, err := r.onlineKeys(ctx, tenant)
	if err != nil {
		return err
	}
	now := r.now()
	var add []store.TrustMetadata

	root, err := r.currentRoot(ctx, tenant)
	if err != nil {
		return err
	}
	if rootJSON != nil {
		next, err := r.checkRoot(root, rootJSON, keys, now)
		if err != nil {
			return err
		}
		root = next
		add = append(add, store.TrustMetadata{Tenant: tenant, Role: Root, Version: next.Signed.Version, Body: rootJSON, Expires: next.Signed.Expires, CreatedAt: now})
	}
	if root == nil {
		return flotilla.Errorf(flotilla.EConflict, "tenant %s has no root yet: run `flotilla trust init --keys DIR` first", tenant)
	}

	r.forget(tenant) // another replica may have published meanwhile
	cur, err := r.targets(ctx, tenant)
	if err != nil {
		return err
	}
	targets := cur.meta
	if targetsJSON != nil {
		next, err := r.checkTargets(ctx, tenant, root, cur.meta, targetsJSON, now)
		if err != nil {
			return err
		}
		targets = next
		add = append(add, store.TrustMetadata{Tenant: tenant, Role: Targets, Version: next.Signed.Version, Body: targetsJSON, Expires: next.Signed.Expires, CreatedAt: now})
	} else if targets != nil {
		if err := root.VerifyDelegate(Targets, targets); err != nil {
			return flotilla.Errorf(flotilla.EConflict, "the new root no longer trusts the key that signed targets version %d: send a targets.json signed with the new targets key in the same request (flotilla trust rotate does)", targets.Signed.Version)
		}
	}
	if targetsJSON != nil {
		online, err := r.signOnline(ctx, tenant, keys, targets.Signed.Version, true, now)
		if err != nil {
			return err
		}
		add = append(add, online...)
	}
	if err := r.st.AddTrustMetadata(ctx, add); err != nil {
		return err
	}
	r.forget(tenant)
	r.log.Info("TUF metadata published", "tenant", tenant, "root", root.Signed.Version, "targets", versionOf(targets))
	return nil
}

func versionOf(t *metadata.Metadata[metadata.TargetsType]) int64 {
	if t == nil {
		return 0
	}
	return t.Signed.Version
}

func (r *Repo) currentRoot(ctx context.Context, tenant string) (*metadata.Metadata[metadata.RootType], error) {
	m, err := r.st.LatestTrustMetadata(ctx, tenant, Root)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return metadata.Root().FromBytes(m.Body)
}

// checkRoot accepts version 1 signed by its own keys, or the next version
// signed by the current root's keys and its own; either must name this
// server's online keys for snapshot and timestamp.
func (r *Repo) checkRoot(cur *metadata.Metadata[metadata.RootType], body []byte, keys map[string]onlineKey, now time.Time) (*metadata.Metadata[metadata.RootType], error) {
	next, err := metadata.Root().FromBytes(body)
	if err != nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "root.json: %v", err)
	}
	want := int64(1)
	if cur != nil {
		want = cur.Signed.Version + 1
	}
	if next.Signed.Version != want {
		if cur == nil {
			return nil, flotilla.Errorf(flotilla.EConflict, "root.json is version %d, but the tenant has no root yet: the first root is version 1", next.Signed.Version)
		}
		return nil, flotilla.Errorf(flotilla.EConflict, "root.json is version %d; the current root is version %d, so the next must be %d", next.Signed.Version, cur.Signed.Version, want)
	}
	if cur != nil {
		if err := cur.VerifyDelegate(Root, next); err != nil {
			return nil, flotilla.Errorf(flotilla.EInvalid, "root.json version %d is not signed by the keys of root version %d: %v", want, cur.Signed.Version, err)
		}
	}
	if err := next.VerifyDelegate(Root, next); err != nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "root.json version %d is not signed by its own root keys: %v", want, err)
	}
	if !next.Signed.Expires.After(now) {
		return nil, flotilla.Errorf(flotilla.EInvalid, "root.json expired at %s", next.Signed.Expires.Format(time.RFC3339))
	}
	if !next.Signed.ConsistentSnapshot {
		return nil, flotilla.Errorf(flotilla.EInvalid, "root.json must set consistent_snapshot: this server publishes consistent snapshots")
	}
	for _, role := range []string{Snapshot, Timestamp} {
		id, _ := keys[role].key.ID()
		rr := next.Signed.Roles[role]
		if rr == nil || len(rr.KeyIDs) != 1 || rr.KeyIDs[0] != id || rr.Threshold != 1 || next.Signed.Keys[id] == nil {
			return nil, flotilla.Errorf(flotilla.EInvalid, "root.json must give the %s role exactly this server's online key %s with threshold 1 (see GET /api/v1/trust)", role, id)
		}
	}
	for _, role := range []string{Root, Targets} {
		rr := next.Signed.Roles[role]
		if rr == nil || rr.Threshold < 1 || len(rr.KeyIDs) < rr.Threshold {
			return nil, flotilla.Errorf(flotilla.EInvalid, "root.json must give the %s role at least threshold-many keys", role)
		}
		for _, id := range rr.KeyIDs {
			if id == mustID(keys[Snapshot].key) || id == mustID(keys[Timestamp].key) {
				return nil, flotilla.Errorf(flotilla.EInvalid, "root.json gives the %s role one of the server's online keys: %s must be signed offline", role, role)
			}
		}
	}
	return next, nil
}

func mustID(k *metadata.Key) string {
	id, _ := k.ID()
	return id
}

// checkTargets accepts the next version of targets, signed by the root's
// targets keys, whose every new or changed entry is a stored artifact with
// exactly that length and those hashes.
func (r *Repo) checkTargets(ctx context.Context, tenant string, root *metadata.Metadata[metadata.RootType], cur *metadata.Metadata[metadata.TargetsType], body []byte, now time.Time) (*metadata.Metadata[metadata.TargetsType], error) {
	next, err := metadata.Targets().FromBytes(body)
	if err != nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "targets.json: %v", err)
	}
	want := int64(1)
	if cur != nil {
		want = cur.Signed.Version + 1
	}
	if next.Signed.Version != want {
		return nil, flotilla.Errorf(flotilla.EConflict, "targets.json is version %d; the next version is %d (someone signed a release meanwhile? sign again)", next.Signed.Version, want)
	}
	if err := root.VerifyDelegate(Targets, next); err != nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "targets.json is not signed by the targets keys of root version %d: %v", root.Signed.Version, err)
	}
	if !next.Signed.Expires.After(now) {
		return nil, flotilla.Errorf(flotilla.EInvalid, "targets.json expired at %s", next.Signed.Expires.Format(time.RFC3339))
	}
	if next.Signed.Delegations != nil && (len(next.Signed.Delegations.Roles) > 0 || next.Signed.Delegations.SuccinctRoles != nil) {
		return nil, flotilla.Errorf(flotilla.EInvalid, "targets.json delegates to other roles; this server serves the top-level targets role only")
	}
	for path, tf := range next.Signed.Targets {
		if cur != nil {
			if old, ok := cur.Signed.Targets[path]; ok && old.Equal(*tf) {
				continue // checked when it was signed
			}
		}
		if err := r.checkTarget(ctx, tenant, path, tf); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// checkTarget: path is NAME/VERSION/FILENAME of a stored artifact whose
// length and hashes are the target's.
func (r *Repo) checkTarget(ctx context.Context, tenant, path string, tf *metadata.TargetFiles) error {
	parts := strings.Split(path, "/")
	if len(parts) != 3 {
		return flotilla.Errorf(flotilla.EInvalid, "target %q: paths are NAME/VERSION/FILENAME", path)
	}
	a, err := r.st.GetArtifact(ctx, tenant, parts[0], parts[1])
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return flotilla.Errorf(flotilla.EInvalid, "target %q: there is no artifact %s %s to sign", path, parts[0], parts[1])
	}
	if err != nil {
		return err
	}
	if TargetPath(a) != path {
		return flotilla.Errorf(flotilla.EInvalid, "target %q: artifact %s %s is named %q on devices; its target path is %s", path, a.Name, a.Version, strings.Split(TargetPath(a), "/")[2], TargetPath(a))
	}
	if tf.Length != a.Size {
		return flotilla.Errorf(flotilla.EInvalid, "target %q: length %d, but the artifact has %d bytes", path, tf.Length, a.Size)
	}
	if len(tf.Hashes) == 0 {
		return flotilla.Errorf(flotilla.EInvalid, "target %q has no hashes", path)
	}
	for alg, h := range tf.Hashes {
		switch alg {
		case "sha256":
			if h.String() != a.SHA256 {
				return flotilla.Errorf(flotilla.EInvalid, "target %q: sha256 %s, but the artifact's is %s", path, h, a.SHA256)
			}
		case "sha512":
			got, err := r.sha512(ctx, a)
			if err != nil {
				return err
			}
			if h.String() != got {
				return flotilla.Errorf(flotilla.EInvalid, "target %q: sha512 %s, but the artifact's bytes hash to %s", path, h, got)
			}
		default:
			return flotilla.Errorf(flotilla.EInvalid, "target %q: hash %q is not supported; use sha256 and sha512", path, alg)
		}
	}
	if tf.Custom != nil {
		var c Custom
		if err := json.Unmarshal(*tf.Custom, &c); err != nil {
			return flotilla.Errorf(flotilla.EInvalid, "target %q: custom: %v", path, err)
		}
		if (c.Name != "" && c.Name != a.Name) || (c.Version != "" && c.Version != a.Version) {
			return flotilla.Errorf(flotilla.EInvalid, "target %q: custom names %s %s", path, c.Name, c.Version)
		}
	}
	return nil
}

func (r *Repo) sha512(ctx context.Context, a flotilla.Artifact) (string, error) {
	obj, err := r.blobs.Open(ctx, a.SHA256)
	if err != nil {
		return "", fmt.Errorf("read artifact %s %s: %w", a.Name, a.Version, err)
	}
	defer obj.Close()
	h := newSHA512()
	if _, err := io.Copy(h, obj); err != nil {
		return "", fmt.Errorf("read artifact %s %s: %w", a.Name, a.Version, err)
	}
	return h.hex(), nil
}
