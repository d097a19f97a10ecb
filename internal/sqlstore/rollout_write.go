package sqlstore

// Writing a rollout's deployments wave by wave. A rollout of more than
// WriteWholeUpTo devices writes its first wave's deployments when it
// starts and the others afterwards (WriteNextWave, from the scheduler),
// each at the latest when its wave starts: a rollout of a million devices
// reaches its first devices without writing a million rows first.
//
// A member whose wave is not written yet has no deployment to supersede.
// Two rules keep the outcome what it would have been had every deployment
// been written at start: a member whose device got a newer deployment
// elsewhere (rollouts.written_after) is written as canceled, and a rollout
// that starts writes the pending waves of the tenant's other rollouts
// first, so that its start supersedes them as usual.

import (
	"context"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// DefaultWriteWholeUpTo is how many devices a rollout may have and still
// have all its deployments written when it starts.
const DefaultWriteWholeUpTo = 20_000

// writeWave writes the deployments of an unwritten wave; a written wave
// is left alone.
func (s *Store) writeWave(ctx context.Context, q querier, r flotilla.Rollout, wave int, now time.Time) error {
	// Claimed first: on PostgreSQL a concurrent writer of the same wave
	// waits on the row and then finds it written.
	res, err := q.ExecContext(ctx, s.q(`UPDATE rollout_waves SET written = 1 WHERE rollout_id = ? AND idx = ? AND written = 0`), r.ID, wave)
	if err != nil {
		return s.wrap("write wave", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return s.wrap("write wave", err)
	}
	var after int64
	if err := q.QueryRowContext(ctx, s.q(`SELECT written_after FROM rollouts WHERE id = ?`), r.ID).Scan(&after); err != nil {
		return s.wrap("write wave", err)
	}
	if err := s.insertScheduled(ctx, q, r, wave, now); err != nil {
		return err
	}
	// Devices assigned directly since the rollout started: their members
	// were superseded. Rollouts started since then wrote this one's waves
	// first (writeOthersPending), so only direct deployments count.
	newer, err := queryColumn[string](ctx, q, s.q(`SELECT DISTINCT device_id FROM deployments WHERE tenant = ? AND rollout_id IS NULL AND id > ?`), r.Tenant, after)
	if err != nil || len(newer) == 0 {
		return s.wrap("write wave", err)
	}
	// A superseded member's deployment is dated from the rollout's start,
	// before the deployment that superseded it.
	started := now
	if r.StartedAt != nil {
		started = *r.StartedAt
	}
	var ids []int64
	err = eachChunk(newer, func(part []string) error {
		args := []any{ts(started), r.ID, wave}
		for _, d := range part {
			args = append(args, d)
		}
		got, err := queryColumn[int64](ctx, q, s.q(`UPDATE deployments SET created_at = ?
			WHERE rollout_id = ? AND wave = ? AND device_id IN (`+placeholders(len(part))+`) RETURNING id`), args...)
		ids = append(ids, got...)
		return s.wrap("write wave", err)
	})
	if err != nil {
		return err
	}
	return s.cancelIDs(ctx, q, ids, nil, now, "superseded by a new assignment")
}

// insertScheduled writes a scheduled deployment for each member of the
// rollout, or of one of its waves (wave >= 0), whose device still exists.
func (s *Store) insertScheduled(ctx context.Context, q querier, r flotilla.Rollout, wave int, now time.Time) error {
	_, err := q.ExecContext(ctx, s.q(`INSERT INTO deployments (tenant, device_id, artifact_id, artifact_name, artifact_version, rollout_id, wave, attempt,
		type, force_at, maint_window, delivery, state, created_at, updated_at)
		SELECT ?, rd.device_id, ?, ?, ?, rd.rollout_id, rd.wave, 1, ?, ?, ?, ?, 'scheduled', ?, ?
		FROM rollout_devices rd JOIN devices dv ON dv.tenant = ? AND dv.id = rd.device_id
		WHERE rd.rollout_id = ? AND (? < 0 OR rd.wave = ?)`),
		r.Tenant, nullInt(r.ArtifactID), r.ArtifactName, r.ArtifactVersion, string(r.Type), tsPtr(r.ForceAt), windowJSON(r.Window),
		r.Delivery, ts(now), ts(now), r.Tenant, r.ID, wave, wave)
	return s.wrap("write deployments", err)
}

// unwrittenWaves lists a rollout's unwritten waves in order.
func (s *Store) unwrittenWaves(ctx context.Context, q querier, id string) ([]int, error) {
	waves, err := queryColumn[int](ctx, q, s.q(`SELECT idx FROM rollout_waves WHERE rollout_id = ? AND written = 0 ORDER BY idx`), id)
	return waves, s.wrap("unwritten waves", err)
}

// WriteNextWave implements store.Rollouts.
func (s *Store) WriteNextWave(ctx context.Context, id string, now time.Time) (bool, error) {
	defer s.observe("write wave", time.Now())
	more := false
	err := s.inTx(ctx, "write wave", func(tx *Tx) error {
		r, err := s.getRollout(ctx, tx, "", id)
		if err != nil {
			return err
		}
		if r.Status != flotilla.RolloutRunning && r.Status != flotilla.RolloutPaused {
			return nil
		}
		waves, err := s.unwrittenWaves(ctx, tx, id)
		if err != nil || len(waves) == 0 {
			return err
		}
		more = len(waves) > 1
		return s.writeWave(ctx, tx, r, waves[0], now)
	})
	return more, err
}

// writeOthersPending writes every unwritten wave of the tenant's other
// active rollouts.
func (s *Store) writeOthersPending(ctx context.Context, tx *Tx, tenant, except string, now time.Time) error {
	ids, err := queryColumn[string](ctx, tx, s.q(`SELECT DISTINCT w.rollout_id FROM rollout_waves w JOIN rollouts r ON r.id = w.rollout_id
		WHERE w.written = 0 AND r.tenant = ? AND r.id <> ? AND r.status IN ('running', 'paused')`), tenant, except)
	if err != nil {
		return s.wrap("write pending waves", err)
	}
	for _, id := range ids {
		r, err := s.getRollout(ctx, tx, "", id)
		if err != nil {
			return err
		}
		waves, err := s.unwrittenWaves(ctx, tx, id)
		if err != nil {
			return err
		}
		for _, w := range waves {
			if err := s.writeWave(ctx, tx, r, w, now); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) writeWholeUpTo() int {
	if s.WriteWholeUpTo > 0 {
		return s.WriteWholeUpTo
	}
	return DefaultWriteWholeUpTo
}
