package tufrepo

import (
	"context"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// signOnline makes the next snapshot (naming targets version tv) when
// newSnapshot, or reuses the current one, and the next timestamp naming it.
func (r *Repo) signOnline(ctx context.Context, tenant string, keys map[string]onlineKey, tv int64, newSnapshot bool, now time.Time) ([]store.TrustMetadata, error) {
	var out []store.TrustMetadata
	var snapBody []byte
	var snapVersion int64
	cur, err := r.st.LatestTrustMetadata(ctx, tenant, Snapshot)
	switch {
	case flotilla.IsCode(err, flotilla.ENotFound):
		newSnapshot = true
	case err != nil:
		return nil, err
	default:
		snapBody, snapVersion = cur.Body, cur.Version
	}
	if newSnapshot {
		snap := metadata.Snapshot(now.Add(r.cfg.SnapshotExpiry).UTC().Truncate(time.Second))
		snap.Signed.Version = snapVersion + 1
		snap.Signed.Meta[Targets+".json"] = metadata.MetaFile(tv)
		if _, err := snap.Sign(keys[Snapshot].signer); err != nil {
			return nil, err
		}
		b, err := snap.ToBytes(false)
		if err != nil {
			return nil, err
		}
		snapBody, snapVersion = b, snap.Signed.Version
		out = append(out, store.TrustMetadata{Tenant: tenant, Role: Snapshot, Version: snapVersion, Body: b, Expires: snap.Signed.Expires, CreatedAt: now})
	}
	tsVersion, err := r.st.LatestTrustVersion(ctx, tenant, Timestamp)
	if err != nil {
		return nil, err
	}
	ts := metadata.Timestamp(now.Add(r.cfg.TimestampExpiry).UTC().Truncate(time.Second))
	ts.Signed.Version = tsVersion + 1
	mf := metadata.MetaFile(snapVersion)
	mf.Length = int64(len(snapBody))
	mf.Hashes = metadata.Hashes{"sha256": sha256Of(snapBody)}
	ts.Signed.Meta[Snapshot+".json"] = mf
	if _, err := ts.Sign(keys[Timestamp].signer); err != nil {
		return nil, err
	}
	b, err := ts.ToBytes(false)
	if err != nil {
		return nil, err
	}
	out = append(out, store.TrustMetadata{Tenant: tenant, Role: Timestamp, Version: ts.Signed.Version, Body: b, Expires: ts.Signed.Expires, CreatedAt: now})
	return out, nil
}

// Refresh re-signs every signed tenant's timestamp (and snapshot) that has
// less than half its validity left. Replicas may all run it: the first to
// store a version wins, the others' attempts are dropped.
func (r *Repo) Refresh(ctx context.Context) error {
	tenants, err := r.st.TrustTenants(ctx, Timestamp)
	if err != nil {
		return err
	}
	for _, tenant := range tenants {
		if err := r.refresh(ctx, tenant); err != nil && !flotilla.IsCode(err, flotilla.EConflict) {
			r.log.Error("re-sign TUF timestamp", "tenant", tenant, "err", err)
		}
	}
	return nil
}

func (r *Repo) refresh(ctx context.Context, tenant string) error {
	now := r.now()
	ts, err := r.st.LatestTrustMetadata(ctx, tenant, Timestamp)
	if err != nil {
		return err
	}
	snap, err := r.st.LatestTrustMetadata(ctx, tenant, Snapshot)
	if err != nil {
		return err
	}
	renewSnapshot := snap.Expires.Sub(now) < r.cfg.SnapshotExpiry/2
	if !renewSnapshot && ts.Expires.Sub(now) >= r.cfg.TimestampExpiry/2 {
		return nil
	}
	r.publish.Lock()
	defer r.publish.Unlock()
	keys, err := r.onlineKeys(ctx, tenant)
	if err != nil {
		return err
	}
	tv, err := r.st.LatestTrustVersion(ctx, tenant, Targets)
	if err != nil {
		return err
	}
	add, err := r.signOnline(ctx, tenant, keys, tv, renewSnapshot, now)
	if err != nil {
		return err
	}
	if err := r.st.AddTrustMetadata(ctx, add); err != nil {
		return err
	}
	r.log.Debug("re-signed TUF timestamp", "tenant", tenant, "snapshot", renewSnapshot)
	return r.st.PruneTrustMetadata(ctx, tenant, Timestamp, 20)
}
