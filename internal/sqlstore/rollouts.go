package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

const rolloutCols = `id, tenant, name, artifact_id, artifact_name, artifact_version, selector, type, force_at, maint_window, policy, policy_name,
	delivery, channel, wave_count, groups_spec, status, reason, start_when_ready, total, created_at, updated_at, started_at, finished_at, version, device_ids`

// activeStates are the states in which a device works on a deployment.
var activeStates = stateList(flotilla.ActiveStates)

func scanRollout(sc interface{ Scan(...any) error }) (flotilla.Rollout, error) {
	var r flotilla.Rollout
	var artifactID, forceAt, started, finished sql.NullInt64
	var window sql.NullString
	var typ, policy, groups, status, deviceIDs string
	var created, updated int64
	err := sc.Scan(&r.ID, &r.Tenant, &r.Name, &artifactID, &r.ArtifactName, &r.ArtifactVersion, &r.Selector, &typ, &forceAt, &window,
		&policy, &r.PolicyName, &r.Delivery, &r.Channel, &r.WaveCount, &groups, &status, &r.Reason, &r.StartWhenReady, &r.Total,
		&created, &updated, &started, &finished, &r.Version, &deviceIDs)
	if err != nil {
		return r, err
	}
	r.ArtifactID = artifactID.Int64
	r.Type, r.Status = flotilla.DeploymentType(typ), flotilla.RolloutStatus(status)
	r.ForceAt, r.StartedAt, r.FinishedAt = fromNullTS(forceAt), fromNullTS(started), fromNullTS(finished)
	r.CreatedAt, r.UpdatedAt = fromTS(created), fromTS(updated)
	if window.Valid && window.String != "" {
		var w flotilla.MaintenanceWindow
		if json.Unmarshal([]byte(window.String), &w) == nil {
			r.Window = &w
		}
	}
	json.Unmarshal([]byte(policy), &r.Policy)
	json.Unmarshal([]byte(groups), &r.Groups)
	json.Unmarshal([]byte(deviceIDs), &r.DeviceIDs)
	return r, nil
}

// CreateRollout implements store.Rollouts.
func (s *Store) CreateRollout(ctx context.Context, r *flotilla.Rollout) error {
	policy, _ := json.Marshal(r.Policy)
	groups, _ := json.Marshal(r.Groups)
	if r.Groups == nil {
		groups = []byte("[]")
	}
	ids, _ := json.Marshal(r.DeviceIDs)
	if r.DeviceIDs == nil {
		ids = []byte("[]")
	}
	_, err := s.exec(ctx, "create rollout", `INSERT INTO rollouts (`+rolloutCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Tenant, r.Name, nullInt(r.ArtifactID), r.ArtifactName, r.ArtifactVersion, r.Selector, string(r.Type), tsPtr(r.ForceAt),
		windowJSON(r.Window), string(policy), r.PolicyName, r.Delivery, r.Channel, r.WaveCount, string(groups), string(r.Status), r.Reason,
		boolInt(r.StartWhenReady), r.Total, ts(r.CreatedAt), ts(r.UpdatedAt), tsPtr(r.StartedAt), tsPtr(r.FinishedAt), r.Version, string(ids))
	return err
}

func (s *Store) getRollout(ctx context.Context, q querier, tenant, id string) (flotilla.Rollout, error) {
	r, err := scanRollout(q.QueryRowContext(ctx, s.q(`SELECT `+rolloutCols+` FROM rollouts WHERE id = ? AND (? = '' OR tenant = ?)`), id, tenant, tenant))
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound("rollout %q not found", id)
	}
	return r, s.wrap("get rollout", err)
}

// waves loads a rollout's waves with counts by the state of each device's
// latest attempt.
func (s *Store) waves(ctx context.Context, q querier, r flotilla.Rollout) ([]flotilla.Wave, error) {
	return s.countedWaves(ctx, q, r, 0)
}

// countedWaves is waves, with counts up to reuse old where reuse is
// positive (see displayWaves).
func (s *Store) countedWaves(ctx context.Context, q querier, r flotilla.Rollout, reuse time.Duration) ([]flotilla.Wave, error) {
	waves, counted, err := s.waveRows(ctx, q, r)
	if err != nil || !counted {
		return waves, err
	}
	if err := s.fillCounts(ctx, q, r, waves, reuse); err != nil {
		return nil, err
	}
	unwrittenCounts(waves)
	return waves, nil
}

// waveRows reads a rollout's waves. A rollout that has not started has
// its counts (every device scheduled) and counted is false; otherwise
// the counts are for countWaves to read.
func (s *Store) waveRows(ctx context.Context, q querier, r flotilla.Rollout) (waves []flotilla.Wave, counted bool, err error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT idx, name, size, status, started_at, success_at, finished_at, error_ack, reason, written
		FROM rollout_waves WHERE rollout_id = ? ORDER BY idx`), r.ID)
	if err != nil {
		return nil, false, s.wrap("load waves", err)
	}
	for rows.Next() {
		w := flotilla.Wave{RolloutID: r.ID, Counts: map[flotilla.DeploymentState]int{}}
		var status string
		var started, success, finished sql.NullInt64
		var written bool
		if err := rows.Scan(&w.Index, &w.Name, &w.Size, &status, &started, &success, &finished, &w.ErrorAck, &w.Reason, &written); err != nil {
			rows.Close()
			return nil, false, s.wrap("load waves", err)
		}
		w.Status = flotilla.WaveStatus(status)
		w.StartedAt, w.SuccessAt, w.FinishedAt = fromNullTS(started), fromNullTS(success), fromNullTS(finished)
		w.Unwritten = !written
		waves = append(waves, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, s.wrap("load waves", err)
	}
	if r.Status == flotilla.RolloutReady || r.Status == flotilla.RolloutCreating || r.Status == flotilla.RolloutDraft || r.StartedAt == nil {
		for i := range waves {
			waves[i].Counts[flotilla.StateScheduled] = waves[i].Size
		}
		return waves, false, nil
	}
	return waves, true, nil
}

// countWaves reads the counts of a started rollout's waves: by state,
// waiting and unhealthy.
func (s *Store) countWaves(ctx context.Context, q querier, id string, waves []flotilla.Wave) error {
	defer s.observe("count waves", time.Now())
	rows, err := q.QueryContext(ctx, s.q(`SELECT wave, state, COUNT(*) FROM deployments WHERE rollout_id = ? AND retried = 0 GROUP BY wave, state`), id)
	if err != nil {
		return s.wrap("count waves", err)
	}
	for rows.Next() {
		var wave, n int
		var state string
		if err := rows.Scan(&wave, &state, &n); err != nil {
			rows.Close()
			return s.wrap("count waves", err)
		}
		if wave >= 0 && wave < len(waves) {
			waves[wave].Counts[flotilla.DeploymentState(state)] = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.wrap("count waves", err)
	}
	rows, err = q.QueryContext(ctx, s.q(`SELECT wave, COUNT(*) FROM deployments WHERE rollout_id = ? AND retried = 0 AND state = 'pending'
		AND retrieved_at IS NULL GROUP BY wave`), id)
	if err != nil {
		return s.wrap("count waves", err)
	}
	for rows.Next() {
		var wave, n int
		if err := rows.Scan(&wave, &n); err != nil {
			rows.Close()
			return s.wrap("count waves", err)
		}
		if wave >= 0 && wave < len(waves) {
			waves[wave].Waiting = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.wrap("count waves", err)
	}
	rows, err = q.QueryContext(ctx, s.q(`SELECT wave, COUNT(*) FROM deployments WHERE rollout_id = ? AND retried = 0 AND state = 'succeeded'
		AND (healthy IS NULL OR healthy = 0) GROUP BY wave`), id)
	if err != nil {
		return s.wrap("count waves", err)
	}
	defer rows.Close()
	for rows.Next() {
		var wave, n int
		if err := rows.Scan(&wave, &n); err != nil {
			return s.wrap("count waves", err)
		}
		if wave >= 0 && wave < len(waves) {
			waves[wave].Unhealthy = n
		}
	}
	return s.wrap("count waves", rows.Err())
}

// unwrittenCounts sets the counts of unwritten waves: their members are
// scheduled, or canceled with their aborted wave, as their deployments
// would have been (the same rule as ListRolloutDevices').
func unwrittenCounts(waves []flotilla.Wave) {
	for i, w := range waves {
		if w.Unwritten {
			st := flotilla.StateScheduled
			if w.Status == flotilla.WaveAborted {
				st = flotilla.StateCanceled
			}
			waves[i].Counts = map[flotilla.DeploymentState]int{st: w.Size}
		}
	}
}

// GetRollout implements store.Rollouts.
func (s *Store) GetRollout(ctx context.Context, tenant, id string) (flotilla.Rollout, []flotilla.Wave, error) {
	defer s.observe("get rollout", time.Now())
	r, err := s.getRollout(ctx, s.rd, tenant, id)
	if err != nil {
		return r, nil, err
	}
	waves, err := s.displayWaves(ctx, r)
	return r, waves, err
}

// ListRollouts implements store.Rollouts.
func (s *Store) ListRollouts(ctx context.Context, tenant string, f flotilla.RolloutFilter) ([]flotilla.Rollout, error) {
	defer s.observe("list rollouts", time.Now())
	query := `SELECT ` + rolloutCols + ` FROM rollouts WHERE tenant = ?`
	args := []any{tenant}
	if f.Status != "" {
		query += ` AND status = ?`
		args = append(args, string(f.Status))
	}
	if f.Channel != "" {
		query += ` AND channel = ?`
		args = append(args, f.Channel)
	}
	rows, err := s.rd.QueryContext(ctx, s.q(query+` ORDER BY created_at DESC, id`), args...)
	if err != nil {
		return nil, s.wrap("list rollouts", err)
	}
	defer rows.Close()
	var out []flotilla.Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, s.wrap("list rollouts", err)
		}
		out = append(out, r)
	}
	return out, s.wrap("list rollouts", rows.Err())
}

// PromoteDraft implements store.Rollouts.
func (s *Store) PromoteDraft(ctx context.Context, tenant, id string, start bool, now time.Time) error {
	n, err := s.exec(ctx, "promote draft", `UPDATE rollouts SET status = 'creating', start_when_ready = ?, updated_at = ?, version = version + 1
		WHERE id = ? AND tenant = ? AND status = 'draft'`, boolInt(start), ts(now), id, tenant)
	if err == nil && n == 0 {
		return flotilla.Errorf(flotilla.EConflict, "rollout %s is not a draft", id)
	}
	return err
}

// DeleteRollout implements store.Rollouts.
func (s *Store) DeleteRollout(ctx context.Context, tenant, id string) error {
	return s.inTx(ctx, "delete rollout", func(tx *Tx) error {
		r, err := s.getRollout(ctx, tx, tenant, id)
		if err != nil {
			return err
		}
		if r.Status == flotilla.RolloutRunning || r.Status == flotilla.RolloutPaused || r.Status == flotilla.RolloutCreating {
			return flotilla.Errorf(flotilla.EConflict, "rollout %s is %s; abort it before deleting", id, r.Status)
		}
		for _, q := range []string{`DELETE FROM rollout_runs WHERE rollout_id = ?`, `DELETE FROM rollout_devices WHERE rollout_id = ?`,
			`DELETE FROM rollout_waves WHERE rollout_id = ?`, `DELETE FROM rollouts WHERE id = ?`} {
			if _, err := tx.ExecContext(ctx, s.q(q), id); err != nil {
				return s.wrap("delete rollout", err)
			}
		}
		return nil
	})
}

// ListRolloutDevices implements store.Rollouts.
func (s *Store) ListRolloutDevices(ctx context.Context, tenant, id string, f flotilla.RolloutDeviceFilter) ([]flotilla.RolloutDevice, error) {
	defer s.observe("list rollout devices", time.Now())
	if _, err := s.getRollout(ctx, s.rd, tenant, id); err != nil {
		return nil, err
	}
	// A member without a deployment is in a wave not written yet (or not
	// started): scheduled, or canceled with its wave.
	state := `COALESCE(d.state, CASE WHEN w.status = 'aborted' THEN 'canceled' ELSE 'scheduled' END)`
	query := `SELECT rd.device_id, rd.wave, d.id, ` + state + `, d.attempt, d.healthy, d.message, d.updated_at
		FROM rollout_devices rd JOIN rollout_waves w ON w.rollout_id = rd.rollout_id AND w.idx = rd.wave
		LEFT JOIN deployments d ON d.rollout_id = rd.rollout_id AND d.device_id = rd.device_id AND d.retried = 0
		WHERE rd.rollout_id = ? AND rd.device_id > ?`
	args := []any{id, f.AfterID}
	if f.Wave != nil {
		query += ` AND rd.wave = ?`
		args = append(args, *f.Wave)
	}
	if f.State != "" {
		query += ` AND ` + state + ` = ?`
		args = append(args, string(f.State))
	}
	query += ` ORDER BY rd.device_id`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.rd.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap("list rollout devices", err)
	}
	defer rows.Close()
	var out []flotilla.RolloutDevice
	for rows.Next() {
		var d flotilla.RolloutDevice
		var depID, attempt, healthy, updated sql.NullInt64
		var state string
		var msg sql.NullString
		if err := rows.Scan(&d.DeviceID, &d.Wave, &depID, &state, &attempt, &healthy, &msg, &updated); err != nil {
			return nil, s.wrap("list rollout devices", err)
		}
		d.DeploymentID, d.State, d.Attempt, d.Message = depID.Int64, flotilla.DeploymentState(state), int(attempt.Int64), msg.String
		if healthy.Valid {
			h := healthy.Int64 == 1
			d.Healthy = &h
		}
		d.UpdatedAt = fromNullTS(updated)
		out = append(out, d)
	}
	return out, s.wrap("list rollout devices", rows.Err())
}

// ListRolloutRuns implements store.Rollouts.
func (s *Store) ListRolloutRuns(ctx context.Context, tenant, id string) ([]flotilla.RolloutRun, error) {
	if _, err := s.getRollout(ctx, s.rd, tenant, id); err != nil {
		return nil, err
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT id, wave, started_at, ended_at, counts, reason FROM rollout_runs WHERE rollout_id = ? ORDER BY id`), id)
	if err != nil {
		return nil, s.wrap("list runs", err)
	}
	defer rows.Close()
	var out []flotilla.RolloutRun
	for rows.Next() {
		run := flotilla.RolloutRun{RolloutID: id, Counts: map[flotilla.DeploymentState]int{}}
		var started int64
		var ended sql.NullInt64
		var counts string
		if err := rows.Scan(&run.ID, &run.Wave, &started, &ended, &counts, &run.Reason); err != nil {
			return nil, s.wrap("list runs", err)
		}
		run.StartedAt, run.EndedAt = fromTS(started), fromNullTS(ended)
		json.Unmarshal([]byte(counts), &run.Counts)
		out = append(out, run)
	}
	return out, s.wrap("list runs", rows.Err())
}

// RolloutFinishes implements store.Rollouts.
func (s *Store) RolloutFinishes(ctx context.Context, tenant, id string) ([]store.RolloutFinish, error) {
	if _, err := s.getRollout(ctx, s.rd, tenant, id); err != nil {
		return nil, err
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT finished_at, state FROM deployments WHERE rollout_id = ? AND retried = 0 AND finished_at IS NOT NULL ORDER BY finished_at`), id)
	if err != nil {
		return nil, s.wrap("rollout finishes", err)
	}
	defer rows.Close()
	var out []store.RolloutFinish
	for rows.Next() {
		var at int64
		var st string
		if err := rows.Scan(&at, &st); err != nil {
			return nil, s.wrap("rollout finishes", err)
		}
		out = append(out, store.RolloutFinish{At: fromTS(at), State: flotilla.DeploymentState(st)})
	}
	return out, s.wrap("rollout finishes", rows.Err())
}
