package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
	"github.com/flotilla-ota/flotilla/rollout"
)

const rolloutCols = `id, tenant, name, artifact_id, artifact_name, artifact_version, selector, type, force_at, maint_window, policy, policy_name,
	delivery, channel, wave_count, groups_spec, status, reason, start_when_ready, total, created_at, updated_at, started_at, finished_at, version, device_ids`

// inflightStates are the open states in which a device works on a deployment.
const inflightStates = `('pending', 'downloading', 'downloaded', 'installing', 'cancel_requested')`

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
	rows, err := q.QueryContext(ctx, s.q(`SELECT idx, name, size, status, started_at, success_at, finished_at, error_ack, reason
		FROM rollout_waves WHERE rollout_id = ? ORDER BY idx`), r.ID)
	if err != nil {
		return nil, s.wrap("load waves", err)
	}
	var waves []flotilla.Wave
	for rows.Next() {
		w := flotilla.Wave{RolloutID: r.ID, Counts: map[flotilla.DeploymentState]int{}}
		var status string
		var started, success, finished sql.NullInt64
		if err := rows.Scan(&w.Index, &w.Name, &w.Size, &status, &started, &success, &finished, &w.ErrorAck, &w.Reason); err != nil {
			rows.Close()
			return nil, s.wrap("load waves", err)
		}
		w.Status = flotilla.WaveStatus(status)
		w.StartedAt, w.SuccessAt, w.FinishedAt = fromNullTS(started), fromNullTS(success), fromNullTS(finished)
		waves = append(waves, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.wrap("load waves", err)
	}
	if r.Status == flotilla.RolloutReady || r.Status == flotilla.RolloutCreating || r.Status == flotilla.RolloutDraft || r.StartedAt == nil {
		for i := range waves {
			waves[i].Counts[flotilla.StateScheduled] = waves[i].Size
		}
		return waves, nil
	}
	rows, err = q.QueryContext(ctx, s.q(`SELECT wave, state, COUNT(*) FROM deployments WHERE rollout_id = ? AND retried = 0 GROUP BY wave, state`), r.ID)
	if err != nil {
		return nil, s.wrap("count waves", err)
	}
	for rows.Next() {
		var wave, n int
		var state string
		if err := rows.Scan(&wave, &state, &n); err != nil {
			rows.Close()
			return nil, s.wrap("count waves", err)
		}
		if wave >= 0 && wave < len(waves) {
			waves[wave].Counts[flotilla.DeploymentState(state)] = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.wrap("count waves", err)
	}
	rows, err = q.QueryContext(ctx, s.q(`SELECT wave, COUNT(*) FROM deployments WHERE rollout_id = ? AND retried = 0 AND state = 'succeeded'
		AND (healthy IS NULL OR healthy = 0) GROUP BY wave`), r.ID)
	if err != nil {
		return nil, s.wrap("count waves", err)
	}
	defer rows.Close()
	for rows.Next() {
		var wave, n int
		if err := rows.Scan(&wave, &n); err != nil {
			return nil, s.wrap("count waves", err)
		}
		if wave >= 0 && wave < len(waves) {
			waves[wave].Unhealthy = n
		}
	}
	return waves, s.wrap("count waves", rows.Err())
}

// GetRollout implements store.Rollouts.
func (s *Store) GetRollout(ctx context.Context, tenant, id string) (flotilla.Rollout, []flotilla.Wave, error) {
	defer s.observe("get rollout", time.Now())
	r, err := s.getRollout(ctx, s.rd, tenant, id)
	if err != nil {
		return r, nil, err
	}
	waves, err := s.waves(ctx, s.rd, r)
	return r, waves, err
}

// ListRollouts implements store.Rollouts.
func (s *Store) ListRollouts(ctx context.Context, tenant string, f store.RolloutFilter) ([]flotilla.Rollout, error) {
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

// planDeployments reads the current (not retried) deployments of rollout
// id that match cond, with what the planner needs of each; args are id
// followed by cond's parameters.
func (s *Store) planDeployments(ctx context.Context, cond, order string, args ...any) ([]rollout.Deployment, error) {
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT d.id, d.device_id, d.wave, d.state, d.attempt, d.started_at, dv.last_seen_at
		FROM deployments d JOIN devices dv ON dv.tenant = d.tenant AND dv.id = d.device_id
		WHERE d.rollout_id = ? AND d.retried = 0 AND (`+cond+`) ORDER BY `+order), args...)
	if err != nil {
		return nil, s.wrap("rollout snapshot", err)
	}
	defer rows.Close()
	var out []rollout.Deployment
	for rows.Next() {
		d, err := scanPlanDeployment(rows)
		if err != nil {
			return nil, s.wrap("rollout snapshot", err)
		}
		out = append(out, d)
	}
	return out, s.wrap("rollout snapshot", rows.Err())
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

// RolloutMembers implements store.Rollouts.
func (s *Store) RolloutMembers(ctx context.Context, tenant string, selector string) ([]store.Member, error) {
	defer s.observe("rollout members", time.Now())
	sel, err := label.Parse(selector)
	if err != nil {
		return nil, err
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT id, labels FROM devices WHERE tenant = ? ORDER BY id`), tenant)
	if err != nil {
		return nil, s.wrap("rollout members", err)
	}
	defer rows.Close()
	var out []store.Member
	for rows.Next() {
		var id, labels string
		if err := rows.Scan(&id, &labels); err != nil {
			return nil, s.wrap("rollout members", err)
		}
		m := decodeMap(labels)
		if sel.Matches(m) {
			out = append(out, store.Member{ID: id, Labels: m})
		}
	}
	return out, s.wrap("rollout members", rows.Err())
}

// MaterializeRollout implements store.Rollouts.
func (s *Store) MaterializeRollout(ctx context.Context, id string, members []string, assign []int, waves []flotilla.Wave, now time.Time) error {
	return s.inTx(ctx, "materialize rollout", func(tx *Tx) error {
		r, err := s.getRollout(ctx, tx, "", id)
		if err != nil {
			return err
		}
		if r.Status != flotilla.RolloutCreating {
			return flotilla.Errorf(flotilla.EConflict, "rollout %s is %s, not creating", id, r.Status)
		}
		for _, q := range []string{`DELETE FROM rollout_devices WHERE rollout_id = ?`, `DELETE FROM rollout_waves WHERE rollout_id = ?`} {
			if _, err := tx.ExecContext(ctx, s.q(q), id); err != nil {
				return s.wrap("materialize rollout", err)
			}
		}
		if s.d.ArrayParams {
			// One statement for the whole membership.
			waves := make([]int64, len(assign))
			for i, w := range assign {
				waves[i] = int64(w)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO rollout_devices (rollout_id, device_id, wave) SELECT $1, m.d, m.w FROM unnest($2::text[], $3::bigint[]) AS m(d, w)`,
				id, members, waves); err != nil {
				return s.wrap("materialize rollout", err)
			}
		}
		for start := 0; start < len(members) && !s.d.ArrayParams; start += chunk {
			end := min(start+chunk, len(members))
			var b strings.Builder
			args := make([]any, 0, (end-start)*3)
			b.WriteString(`INSERT INTO rollout_devices (rollout_id, device_id, wave) VALUES `)
			for i := start; i < end; i++ {
				if i > start {
					b.WriteByte(',')
				}
				b.WriteString("(?, ?, ?)")
				args = append(args, id, members[i], assign[i])
			}
			if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
				return s.wrap("materialize rollout", err)
			}
		}
		for _, w := range waves {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO rollout_waves (rollout_id, idx, name, size, status) VALUES (?, ?, ?, ?, ?)`),
				id, w.Index, w.Name, w.Size, string(flotilla.WaveScheduled)); err != nil {
				return s.wrap("materialize rollout", err)
			}
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE rollouts SET status = 'ready', total = ?, updated_at = ?, version = version + 1 WHERE id = ?`), len(members), ts(now), id)
		return s.wrap("materialize rollout", err)
	})
}

// StartRollout implements store.Rollouts.
func (s *Store) StartRollout(ctx context.Context, tenant, id string, now time.Time) ([]store.Superseded, error) {
	var sup []store.Superseded
	err := s.inTx(ctx, "start rollout", func(tx *Tx) error {
		r, err := s.getRollout(ctx, tx, tenant, id)
		if err != nil {
			return err
		}
		if r.Status != flotilla.RolloutReady {
			return flotilla.Errorf(flotilla.EConflict, "rollout %s is %s; only a ready rollout can start", id, r.Status)
		}
		if sup, err = s.supersedeForRollout(ctx, tx, r, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO deployments (tenant, device_id, artifact_id, artifact_name, artifact_version, rollout_id, wave, attempt,
			type, force_at, maint_window, delivery, state, created_at, updated_at)
			SELECT ?, rd.device_id, ?, ?, ?, rd.rollout_id, rd.wave, 1, ?, ?, ?, ?, 'scheduled', ?, ?
			FROM rollout_devices rd JOIN devices dv ON dv.tenant = ? AND dv.id = rd.device_id
			WHERE rd.rollout_id = ?`),
			r.Tenant, nullInt(r.ArtifactID), r.ArtifactName, r.ArtifactVersion, string(r.Type), tsPtr(r.ForceAt), windowJSON(r.Window),
			r.Delivery, ts(now), ts(now), r.Tenant, id)
		if err != nil {
			return s.wrap("start rollout", err)
		}
		// The "scheduled" history entry of each deployment is implied by its
		// creation (see withScheduled), not written here.
		_, err = tx.ExecContext(ctx, s.q(`UPDATE rollouts SET status = 'running', started_at = ?, updated_at = ?, reason = '', version = version + 1 WHERE id = ?`),
			ts(now), ts(now), id)
		return s.wrap("start rollout", err)
	})
	return sup, err
}

// supersedeForRollout moves the open deployments of a rollout's devices out
// of the way, as supersede does for one device.
func (s *Store) supersedeForRollout(ctx context.Context, tx *Tx, r flotilla.Rollout, now time.Time) ([]store.Superseded, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT d.id, d.device_id, d.state, d.retrieved_at, d.rollout_id FROM deployments d
		JOIN rollout_devices rd ON rd.rollout_id = ? AND rd.device_id = d.device_id
		WHERE d.tenant = ? AND d.state IN `+openStates+` AND d.state <> 'cancel_requested'`), r.ID, r.Tenant)
	if err != nil {
		return nil, s.wrap("supersede", err)
	}
	var out []store.Superseded
	var cancel, ask []int64
	for rows.Next() {
		var id int64
		var dev, st string
		var retrieved sql.NullInt64
		var rollout sql.NullString
		if err := rows.Scan(&id, &dev, &st, &retrieved, &rollout); err != nil {
			rows.Close()
			return nil, s.wrap("supersede", err)
		}
		state := flotilla.DeploymentState(st)
		if state == flotilla.StateScheduled || (state == flotilla.StatePending && !retrieved.Valid) {
			cancel = append(cancel, id)
			out = append(out, store.Superseded{ID: id, DeviceID: dev, RolloutID: rollout.String, State: flotilla.StateCanceled})
		} else {
			ask = append(ask, id)
			out = append(out, store.Superseded{ID: id, DeviceID: dev, RolloutID: rollout.String, State: flotilla.StateCancelRequested})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.wrap("supersede", err)
	}
	why := "superseded by rollout " + r.Name
	if err := s.cancelIDs(ctx, tx, cancel, ask, now, why); err != nil {
		return nil, err
	}
	return out, nil
}

// cancelIDs cancels deployments on the server (cancel) or asks their
// devices to (ask), with history.
func (s *Store) cancelIDs(ctx context.Context, q querier, cancel, ask []int64, now time.Time, why string) error {
	err := eachChunk(cancel, func(part []int64) error {
		_, err := q.ExecContext(ctx, s.q(`UPDATE deployments SET state = 'canceled', updated_at = ?, finished_at = ?, message = ? WHERE id IN (`+placeholders(len(part))+`)`),
			append([]any{ts(now), ts(now), why}, int64Args(part)...)...)
		return s.wrap("cancel deployments", err)
	})
	if err != nil {
		return err
	}
	err = eachChunk(ask, func(part []int64) error {
		_, err := q.ExecContext(ctx, s.q(`UPDATE deployments SET prev_state = state, state = 'cancel_requested', updated_at = ?, message = ? WHERE id IN (`+placeholders(len(part))+`)`),
			append([]any{ts(now), why}, int64Args(part)...)...)
		return s.wrap("cancel deployments", err)
	})
	if err != nil {
		return err
	}
	if err := s.bulkEvents(ctx, q, cancel, now, flotilla.StateCanceled, []string{why}, "server"); err != nil {
		return err
	}
	return s.bulkEvents(ctx, q, ask, now, flotilla.StateCancelRequested, []string{why}, "server")
}

// ClaimRollouts implements store.Rollouts. The lease condition is repeated
// in the outer WHERE so that, on PostgreSQL, a row another replica claimed
// meanwhile is re-checked and skipped.
func (s *Store) ClaimRollouts(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error) {
	defer s.observe("claim rollouts", time.Now())
	rows, err := s.wdb.QueryContext(ctx, s.q(`UPDATE rollouts SET lease_owner = ?, lease_until = ?
		WHERE id IN (SELECT id FROM rollouts WHERE status IN ('creating', 'running', 'paused')
			AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?) ORDER BY updated_at LIMIT ?)
		AND status IN ('creating', 'running', 'paused') AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)
		RETURNING id`), owner, ts(until), owner, ts(now), limit, owner, ts(now))
	if err != nil {
		return nil, s.wrap("claim rollouts", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.wrap("claim rollouts", err)
		}
		ids = append(ids, id)
	}
	return ids, s.wrap("claim rollouts", rows.Err())
}

// ReleaseRollout implements store.Rollouts.
func (s *Store) ReleaseRollout(ctx context.Context, id, owner string) error {
	_, err := s.exec(ctx, "release rollout", `UPDATE rollouts SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?`, id, owner)
	return err
}

// RolloutSnapshot implements store.Rollouts.
func (s *Store) RolloutSnapshot(ctx context.Context, id string, now time.Time) (rollout.Snapshot, error) {
	defer s.observe("rollout snapshot", time.Now())
	var snap rollout.Snapshot
	r, err := s.getRollout(ctx, s.rd, "", id)
	if err != nil {
		return snap, err
	}
	waves, err := s.waves(ctx, s.rd, r)
	if err != nil {
		return snap, err
	}
	snap.Rollout, snap.Waves = r, waves
	// Scheduled devices matter for running waves and the next one to start.
	maxWave := 0
	for _, w := range waves {
		if w.Status == flotilla.WaveRunning || w.Status == flotilla.WaveSucceeded || w.Status == flotilla.WaveFailed {
			maxWave = w.Index + 1
		}
		snap.Successes += w.Counts[flotilla.StateSucceeded]
	}
	snap.Open, err = s.planDeployments(ctx, `d.state IN `+inflightStates+` OR (d.state = 'scheduled' AND d.wave <= ?)`, `d.wave, d.device_id`, id, maxWave)
	if err != nil {
		return snap, err
	}
	if r.Policy.Retries > 0 {
		snap.Retryable, err = s.planDeployments(ctx, `d.state IN ('failed', 'timed_out') AND d.attempt <= ?`, `d.id`, id, r.Policy.Retries)
		if err != nil {
			return snap, err
		}
	}
	if r.Policy.Rate != nil {
		rows, err := s.rd.QueryContext(ctx, s.q(`SELECT started_at FROM deployments WHERE rollout_id = ? AND started_at > ?`), id, ts(now.Add(-time.Minute)))
		if err != nil {
			return snap, s.wrap("rollout snapshot", err)
		}
		for rows.Next() {
			var at int64
			if err := rows.Scan(&at); err != nil {
				rows.Close()
				return snap, s.wrap("rollout snapshot", err)
			}
			snap.ReleasedAt = append(snap.ReleasedAt, fromTS(at))
		}
		rows.Close()
	}
	return snap, nil
}

func scanPlanDeployment(sc interface{ Scan(...any) error }) (rollout.Deployment, error) {
	var d rollout.Deployment
	var state string
	var started, seen sql.NullInt64
	err := sc.Scan(&d.ID, &d.DeviceID, &d.Wave, &state, &d.Attempt, &started, &seen)
	d.State = flotilla.DeploymentState(state)
	d.StartedAt, d.LastSeen = fromNullTS(started), fromNullTS(seen)
	return d, err
}

// setStates moves deployments in one of the from states to state, and
// returns the ones it moved.
func (s *Store) setStates(ctx context.Context, q querier, ids []int64, from string, set string, setArgs []any, state flotilla.DeploymentState, now time.Time, why string) ([]store.Touched, error) {
	var touched []store.Touched
	var moved []int64
	err := eachChunk(ids, func(part []int64) error {
		args := append(append([]any{}, setArgs...), int64Args(part)...)
		rows, err := q.QueryContext(ctx, s.q(`UPDATE deployments SET `+set+` WHERE id IN (`+placeholders(len(part))+`) AND state IN `+from+` RETURNING id, device_id, wave`), args...)
		if err != nil {
			return s.wrap("update deployments", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t store.Touched
			if err := rows.Scan(&t.ID, &t.DeviceID, &t.Wave); err != nil {
				return s.wrap("update deployments", err)
			}
			t.State = state
			touched = append(touched, t)
			moved = append(moved, t.ID)
		}
		return s.wrap("update deployments", rows.Err())
	})
	if err != nil {
		return nil, err
	}
	var details []string
	if why != "" {
		details = []string{why}
	}
	return touched, s.bulkEvents(ctx, q, moved, now, state, details, "server")
}

// retry gives each deployment a new scheduled attempt.
func (s *Store) retry(ctx context.Context, q querier, ids []int64, now time.Time) ([]store.Touched, error) {
	var touched []store.Touched
	err := eachChunk(ids, func(part []int64) error {
		in := placeholders(len(part))
		_, err := q.ExecContext(ctx, s.q(`INSERT INTO deployments (tenant, device_id, artifact_id, artifact_name, artifact_version, rollout_id, wave, attempt,
			type, force_at, maint_window, delivery, state, created_at, updated_at)
			SELECT tenant, device_id, artifact_id, artifact_name, artifact_version, rollout_id, wave, attempt + 1,
			type, force_at, maint_window, delivery, 'scheduled', ?, ? FROM deployments WHERE id IN (`+in+`) AND retried = 0`),
			append([]any{ts(now), ts(now)}, int64Args(part)...)...)
		if err != nil {
			return s.wrap("retry", err)
		}
		rows, err := q.QueryContext(ctx, s.q(`UPDATE deployments SET retried = 1 WHERE id IN (`+in+`) RETURNING device_id, wave, rollout_id`), int64Args(part)...)
		if err != nil {
			return s.wrap("retry", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t store.Touched
			var rid string
			if err := rows.Scan(&t.DeviceID, &t.Wave, &rid); err != nil {
				return s.wrap("retry", err)
			}
			t.State = flotilla.StateScheduled
			touched = append(touched, t)
		}
		return s.wrap("retry", rows.Err())
	})
	return touched, err
}

// ApplyRolloutPlan implements store.Rollouts.
func (s *Store) ApplyRolloutPlan(ctx context.Context, id, owner string, version int64, actions []rollout.Action, now time.Time) ([]store.Touched, error) {
	var touched []store.Touched
	err := s.inTx(ctx, "apply rollout plan", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE rollouts SET version = version + 1, updated_at = ? WHERE id = ? AND version = ? AND lease_owner = ?`),
			ts(now), id, version, owner)
		if err != nil {
			return s.wrap("apply rollout plan", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return flotilla.Errorf(flotilla.EConflict, "rollout %s changed or its lease moved; plan again", id)
		}
		r, err := s.getRollout(ctx, tx, "", id)
		if err != nil {
			return err
		}
		for _, a := range actions {
			t, err := s.applyAction(ctx, tx, r, a, now)
			if err != nil {
				return fmt.Errorf("apply %s: %w", a.Kind, err)
			}
			touched = append(touched, t...)
		}
		return nil
	})
	return touched, err
}

func (s *Store) applyAction(ctx context.Context, tx *Tx, r flotilla.Rollout, a rollout.Action, now time.Time) ([]store.Touched, error) {
	switch a.Kind {
	case rollout.ActTimeOut:
		return s.setStates(ctx, tx, a.IDs, inflightStates, `state = 'timed_out', finished_at = ?, updated_at = ?, message = ?`,
			[]any{ts(now), ts(now), a.Reason}, flotilla.StateTimedOut, now, a.Reason)
	case rollout.ActSkip:
		return s.setStates(ctx, tx, a.IDs, `('scheduled')`, `state = 'skipped', finished_at = ?, updated_at = ?, message = ?`,
			[]any{ts(now), ts(now), a.Reason}, flotilla.StateSkipped, now, a.Reason)
	case rollout.ActRelease:
		why := fmt.Sprintf("released in wave %d", *a.Wave+1)
		return s.setStates(ctx, tx, a.IDs, `('scheduled')`, `state = 'pending', started_at = ?, updated_at = ?`,
			[]any{ts(now), ts(now)}, flotilla.StatePending, now, why)
	case rollout.ActRetry:
		return s.retry(ctx, tx, a.IDs, now)
	case rollout.ActCancel:
		return s.cancelOpen(ctx, tx, r.ID, a.IDs, now, a.Reason)
	case rollout.ActStartWave:
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = 'running', started_at = COALESCE(started_at, ?) WHERE rollout_id = ? AND idx = ?`),
			ts(now), r.ID, *a.Wave); err != nil {
			return nil, s.wrap("start wave", err)
		}
		return nil, s.startRun(ctx, tx, r.ID, *a.Wave, now)
	case rollout.ActSuccessGate:
		_, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET success_at = ? WHERE rollout_id = ? AND idx = ? AND success_at IS NULL`), ts(now), r.ID, *a.Wave)
		return nil, s.wrap("success gate", err)
	case rollout.ActFinishWave:
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = ?, finished_at = ?, reason = ? WHERE rollout_id = ? AND idx = ?`),
			string(a.WaveStatus), ts(now), a.Reason, r.ID, *a.Wave); err != nil {
			return nil, s.wrap("finish wave", err)
		}
		return nil, s.endRuns(ctx, tx, r, a.Wave, now, a.Reason)
	case rollout.ActSetStatus:
		return s.setRolloutStatus(ctx, tx, r, a.Status, a.Reason, now)
	}
	return nil, fmt.Errorf("unknown action %q", a.Kind)
}

// cancelOpen cancels the given open deployments of a rollout (all of them
// when ids is nil): never-fetched ones at once, others through the device.
func (s *Store) cancelOpen(ctx context.Context, q querier, rolloutID string, ids []int64, now time.Time, why string) ([]store.Touched, error) {
	query := `SELECT id, device_id, wave, state, retrieved_at FROM deployments WHERE rollout_id = ? AND retried = 0 AND state IN ` + openStates + ` AND state <> 'cancel_requested'`
	rows, err := q.QueryContext(ctx, s.q(query), rolloutID)
	if err != nil {
		return nil, s.wrap("cancel", err)
	}
	want := map[int64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var cancel, ask []int64
	var touched []store.Touched
	for rows.Next() {
		var t store.Touched
		var st string
		var retrieved sql.NullInt64
		if err := rows.Scan(&t.ID, &t.DeviceID, &t.Wave, &st, &retrieved); err != nil {
			rows.Close()
			return nil, s.wrap("cancel", err)
		}
		if ids != nil && !want[t.ID] {
			continue
		}
		state := flotilla.DeploymentState(st)
		if state == flotilla.StateScheduled || (state == flotilla.StatePending && !retrieved.Valid) {
			t.State = flotilla.StateCanceled
			cancel = append(cancel, t.ID)
		} else {
			t.State = flotilla.StateCancelRequested
			ask = append(ask, t.ID)
		}
		touched = append(touched, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.wrap("cancel", err)
	}
	return touched, s.cancelIDs(ctx, q, cancel, ask, now, why)
}

func (s *Store) startRun(ctx context.Context, q querier, rolloutID string, wave int, now time.Time) error {
	_, err := q.ExecContext(ctx, s.q(`INSERT INTO rollout_runs (rollout_id, wave, started_at) VALUES (?, ?, ?)`), rolloutID, wave, ts(now))
	return s.wrap("start run", err)
}

// endRuns closes the open runs of one wave (all waves when wave is nil),
// recording the wave's counts and why the run ended.
func (s *Store) endRuns(ctx context.Context, q querier, r flotilla.Rollout, wave *int, now time.Time, why string) error {
	waves, err := s.waves(ctx, q, r)
	if err != nil {
		return err
	}
	for _, w := range waves {
		if wave != nil && w.Index != *wave {
			continue
		}
		counts, _ := json.Marshal(w.Counts)
		if _, err := q.ExecContext(ctx, s.q(`UPDATE rollout_runs SET ended_at = ?, counts = ?, reason = ? WHERE rollout_id = ? AND wave = ? AND ended_at IS NULL`),
			ts(now), string(counts), why, r.ID, w.Index); err != nil {
			return s.wrap("end runs", err)
		}
	}
	return nil
}

// setRolloutStatus moves the rollout, ending runs and, for an abort,
// canceling whatever is still open.
func (s *Store) setRolloutStatus(ctx context.Context, q querier, r flotilla.Rollout, st flotilla.RolloutStatus, why string, now time.Time) ([]store.Touched, error) {
	var touched []store.Touched
	if st == flotilla.RolloutAborted {
		var err error
		if touched, err = s.cancelOpen(ctx, q, r.ID, nil, now, "rollout aborted: "+why); err != nil {
			return nil, err
		}
		if _, err := q.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = 'aborted', finished_at = ? WHERE rollout_id = ? AND status IN ('scheduled', 'running')`),
			ts(now), r.ID); err != nil {
			return nil, s.wrap("abort waves", err)
		}
	}
	var finished any
	if st.Finished() {
		finished = ts(now)
	}
	if _, err := q.ExecContext(ctx, s.q(`UPDATE rollouts SET status = ?, reason = ?, updated_at = ?, finished_at = ? WHERE id = ?`),
		string(st), why, ts(now), finished, r.ID); err != nil {
		return nil, s.wrap("set rollout status", err)
	}
	if st == flotilla.RolloutPaused || st.Finished() {
		if err := s.endRuns(ctx, q, r, nil, now, string(st)+": "+why); err != nil {
			return nil, err
		}
	}
	return touched, nil
}

// ChangeRollout implements store.Rollouts.
func (s *Store) ChangeRollout(ctx context.Context, tenant, id string, op store.RolloutOp, now time.Time) (flotilla.Rollout, []store.Touched, error) {
	var out flotilla.Rollout
	var touched []store.Touched
	err := s.inTx(ctx, "change rollout", func(tx *Tx) error {
		r, err := s.getRollout(ctx, tx, tenant, id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollouts SET version = version + 1, updated_at = ? WHERE id = ?`), ts(now), id); err != nil {
			return s.wrap("change rollout", err)
		}
		conflict := func() error {
			return flotilla.Errorf(flotilla.EConflict, "cannot %s rollout %s: it is %s", op, id, r.Status)
		}
		switch op {
		case store.OpPause:
			if r.Status != flotilla.RolloutRunning {
				return conflict()
			}
			touched, err = s.setRolloutStatus(ctx, tx, r, flotilla.RolloutPaused, "paused by an operator", now)
		case store.OpResume:
			if r.Status != flotilla.RolloutPaused {
				return conflict()
			}
			// Resuming accepts the state of the waves that tripped a gate.
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET error_ack = 1 WHERE rollout_id = ? AND status IN ('running', 'failed')`), id); err != nil {
				return s.wrap("resume", err)
			}
			if err := s.restartRuns(ctx, tx, id, now); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, s.q(`UPDATE rollouts SET status = 'running', reason = 'resumed by an operator' WHERE id = ?`), id)
			err = s.wrap("resume", err)
		case store.OpAbort:
			if r.Status.Finished() {
				return conflict()
			}
			touched, err = s.setRolloutStatus(ctx, tx, r, flotilla.RolloutAborted, "aborted by an operator", now)
		case store.OpRetry:
			touched, err = s.retryRollout(ctx, tx, r, now)
		case store.OpNextWave:
			if r.Status != flotilla.RolloutRunning && r.Status != flotilla.RolloutPaused {
				return conflict()
			}
			var next int
			// Scoped so that startRun's error below reaches the check after the switch.
			if err := tx.QueryRowContext(ctx, s.q(`SELECT MIN(idx) FROM rollout_waves WHERE rollout_id = ? AND status = 'scheduled'`), id).Scan(&next); err != nil {
				return flotilla.Errorf(flotilla.EConflict, "rollout %s has no wave left to start", id)
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = 'running', started_at = ? WHERE rollout_id = ? AND idx = ?`), ts(now), id, next); err != nil {
				return s.wrap("next wave", err)
			}
			err = s.startRun(ctx, tx, id, next, now)
		default:
			return flotilla.Errorf(flotilla.EInvalid, "unknown rollout action %q", op)
		}
		if err != nil {
			return err
		}
		out, err = s.getRollout(ctx, tx, tenant, id)
		return err
	})
	return out, touched, err
}

// restartRuns opens a new run for every running wave.
func (s *Store) restartRuns(ctx context.Context, q querier, id string, now time.Time) error {
	_, err := q.ExecContext(ctx, s.q(`INSERT INTO rollout_runs (rollout_id, wave, started_at) SELECT rollout_id, idx, ? FROM rollout_waves WHERE rollout_id = ? AND status = 'running'`), ts(now), id)
	return s.wrap("restart runs", err)
}

// retryRollout re-runs the failed, timed-out, rejected and skipped devices
// of a started rollout.
func (s *Store) retryRollout(ctx context.Context, tx *Tx, r flotilla.Rollout, now time.Time) ([]store.Touched, error) {
	if r.StartedAt == nil || r.Status == flotilla.RolloutAborted {
		return nil, flotilla.Errorf(flotilla.EConflict, "cannot retry rollout %s: it is %s", r.ID, r.Status)
	}
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id FROM deployments WHERE rollout_id = ? AND retried = 0 AND state IN ('failed', 'timed_out', 'rejected', 'skipped')`), r.ID)
	if err != nil {
		return nil, s.wrap("retry", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, s.wrap("retry", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) == 0 {
		return nil, flotilla.Errorf(flotilla.EConflict, "rollout %s has no failed, timed-out or skipped device to retry", r.ID)
	}
	touched, err := s.retry(ctx, tx, ids, now)
	if err != nil {
		return nil, err
	}
	waves := map[int]bool{}
	for _, t := range touched {
		waves[t.Wave] = true
	}
	for w := range waves {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = 'running', finished_at = NULL, error_ack = 1, reason = 'retrying' WHERE rollout_id = ? AND idx = ? AND status <> 'scheduled'`), r.ID, w); err != nil {
			return nil, s.wrap("retry", err)
		}
		if err := s.startRun(ctx, tx, r.ID, w, now); err != nil {
			return nil, err
		}
	}
	_, err = tx.ExecContext(ctx, s.q(`UPDATE rollouts SET status = 'running', reason = ?, finished_at = NULL WHERE id = ?`),
		fmt.Sprintf("retrying %d devices", len(ids)), r.ID)
	return touched, s.wrap("retry", err)
}

// ListRolloutDevices implements store.Rollouts.
func (s *Store) ListRolloutDevices(ctx context.Context, tenant, id string, f store.RolloutDeviceFilter) ([]store.RolloutDevice, error) {
	defer s.observe("list rollout devices", time.Now())
	if _, err := s.getRollout(ctx, s.rd, tenant, id); err != nil {
		return nil, err
	}
	query := `SELECT rd.device_id, rd.wave, d.id, COALESCE(d.state, 'scheduled'), d.attempt, d.healthy, d.message, d.updated_at
		FROM rollout_devices rd LEFT JOIN deployments d ON d.rollout_id = rd.rollout_id AND d.device_id = rd.device_id AND d.retried = 0
		WHERE rd.rollout_id = ? AND rd.device_id > ?`
	args := []any{id, f.AfterID}
	if f.Wave != nil {
		query += ` AND rd.wave = ?`
		args = append(args, *f.Wave)
	}
	if f.State != "" {
		query += ` AND COALESCE(d.state, 'scheduled') = ?`
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
	var out []store.RolloutDevice
	for rows.Next() {
		var d store.RolloutDevice
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
