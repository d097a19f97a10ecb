package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// DeploymentByUpdateID implements store.Deployments.
func (s *Store) DeploymentByUpdateID(ctx context.Context, tenant, deviceID, updateID string) (flotilla.Deployment, error) {
	d, err := scanDeployment(s.rd.QueryRowContext(ctx, s.q(`SELECT `+deploymentCols+` FROM deployments WHERE tenant = ? AND device_id = ? AND update_id = ?`), tenant, deviceID, updateID))
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("update %q of device %q not found", updateID, deviceID)
	}
	if err != nil {
		return d, s.wrap("deployment by update id", err)
	}
	hist, err := s.history(ctx, s.rd, []int64{d.ID})
	d.History = withScheduled(d, hist[d.ID])
	return d, err
}

// ClaimPushDeployments implements store.Deployments. The candidates come
// from two partial indexes (migration 019): unclaimed, in id order, and
// held under a lease that ran out. As for rollouts, the lease condition is
// repeated in the outer WHERE for PostgreSQL.
func (s *Store) ClaimPushDeployments(ctx context.Context, owner string, now, until time.Time, limit int, exclude []int64, newID func() string) ([]flotilla.Deployment, error) {
	open := `delivery = 'push' AND state IN ('pending', 'downloading', 'downloaded', 'installing', 'cancel_requested')`
	notIn := ""
	if len(exclude) > 0 {
		notIn = ` AND id NOT IN (` + placeholders(len(exclude)) + `)`
	}
	excl := int64Args(exclude)
	args := slices.Concat([]any{owner, ts(until)},
		excl, []any{limit}, // unclaimed
		[]any{ts(now)}, excl, []any{limit}, // lapsed
		[]any{limit, ts(now)})
	query := `UPDATE deployments SET push_owner = ?, push_until = ?
		WHERE id IN (
			SELECT id FROM (SELECT id FROM deployments WHERE ` + open + ` AND push_owner IS NULL` + notIn + ` ORDER BY id LIMIT ?) AS unclaimed
			UNION
			SELECT id FROM (SELECT id FROM deployments WHERE ` + open + ` AND push_owner IS NOT NULL AND push_until < ?` + notIn + ` ORDER BY id LIMIT ?) AS lapsed
			ORDER BY id LIMIT ?)
		AND (push_owner IS NULL OR push_until < ?)
		RETURNING ` + deploymentCols
	var out []flotilla.Deployment
	err := s.inTx(ctx, "claim push", func(tx *Tx) error {
		out = nil
		rows, err := tx.QueryContext(ctx, s.q(query), args...)
		if err != nil {
			return s.wrap("claim push", err)
		}
		for rows.Next() {
			d, err := scanDeployment(rows)
			if err != nil {
				rows.Close()
				return s.wrap("claim push", err)
			}
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.wrap("claim push", err)
		}
		for i := range out {
			if out[i].UpdateID != "" {
				continue
			}
			out[i].UpdateID = newID()
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE deployments SET update_id = ? WHERE id = ?`), out[i].UpdateID, out[i].ID); err != nil {
				return s.wrap("claim push", err)
			}
		}
		return nil
	})
	return out, err
}

// RenewPushClaims implements store.Deployments.
func (s *Store) RenewPushClaims(ctx context.Context, owner string, ids []int64, until time.Time) error {
	return eachChunk(ids, func(part []int64) error {
		_, err := s.exec(ctx, "renew push", `UPDATE deployments SET push_until = ? WHERE push_owner = ? AND id IN (`+placeholders(len(part))+`)`,
			append([]any{ts(until), owner}, int64Args(part)...)...)
		return err
	})
}

// ReleasePushClaim implements store.Deployments.
func (s *Store) ReleasePushClaim(ctx context.Context, id int64, owner string) error {
	_, err := s.exec(ctx, "release push", `UPDATE deployments SET push_owner = NULL, push_until = NULL WHERE id = ? AND push_owner = ?`, id, owner)
	return err
}
