package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

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
func (s *Store) RolloutSnapshot(ctx context.Context, id string, now time.Time, read store.SnapshotReads) (rollout.Snapshot, error) {
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
	for _, w := range waves {
		snap.Successes += w.Counts[flotilla.StateSucceeded]
	}
	maxWave := rollout.ScheduledThrough(waves, read.NextWave)
	// One index seek per wave (deployments_rollout_state) rather than a
	// scan of every wave up to maxWave.
	waveArgs := make([]any, maxWave+1)
	for i := range waveArgs {
		waveArgs[i] = i
	}
	var open []string
	if len(waveArgs) > 0 {
		open = append(open, `d.state = 'scheduled' AND d.wave IN (`+placeholders(len(waveArgs))+`)`)
	}
	if rollout.NeedsInFlight(r) {
		open = append(open, `d.state IN `+activeStates)
	}
	if len(open) > 0 {
		snap.Open, err = s.planDeployments(ctx, `(`+strings.Join(open, `) OR (`)+`)`, `d.wave, d.device_id`, append([]any{id}, waveArgs...)...)
		if err != nil {
			return snap, err
		}
	}
	if read.Failed {
		snap.Failed, err = s.planDeployments(ctx, `d.state IN ('failed', 'timed_out', 'rejected', 'skipped')`, `d.id`, id)
		if err != nil {
			return snap, err
		}
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

// move applies a bulk transition of the domain to the deployments among
// ids that are in one of its From states, and returns the ones it moved.
func (s *Store) move(ctx context.Context, q querier, m flotilla.Move, ids []int64, now time.Time, why string) ([]store.Touched, error) {
	set, setArgs := `state = ?, updated_at = ?`, []any{string(m.To()), ts(now)}
	switch {
	case m == flotilla.MoveRelease:
		set += `, started_at = ?`
		setArgs = append(setArgs, ts(now))
	case m.Ends():
		set += `, finished_at = ?, message = ?`
		setArgs = append(setArgs, ts(now), why)
	}
	var touched []store.Touched
	var moved []int64
	err := eachChunk(ids, func(part []int64) error {
		args := append(append([]any{}, setArgs...), int64Args(part)...)
		rows, err := q.QueryContext(ctx, s.q(`UPDATE deployments SET `+set+` WHERE id IN (`+placeholders(len(part))+`) AND state IN `+stateList(m.From())+
			` RETURNING id, device_id, wave, type, force_at, maint_window, delivery`), args...)
		if err != nil {
			return s.wrap("update deployments", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t store.Touched
			var typ string
			var forceAt sql.NullInt64
			var window sql.NullString
			if err := rows.Scan(&t.ID, &t.DeviceID, &t.Wave, &typ, &forceAt, &window, &t.Delivery); err != nil {
				return s.wrap("update deployments", err)
			}
			t.State, t.Type, t.ForceAt, t.Window = m.To(), flotilla.DeploymentType(typ), fromNullTS(forceAt), windowOf(window)
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
	return touched, s.bulkEvents(ctx, q, moved, now, m.To(), details, flotilla.SourceServer)
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
		// An operator's plan (owner "") needs no lease: the version alone
		// says nobody changed the rollout since it was read.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE rollouts SET version = version + 1, updated_at = ? WHERE id = ? AND version = ? AND (? = '' OR lease_owner = ?)`),
			ts(now), id, version, owner, owner)
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
	wave := func() (int, error) {
		if a.Wave == nil {
			return 0, fmt.Errorf("action %s needs a wave", a.Kind)
		}
		return *a.Wave, nil
	}
	switch a.Kind {
	case rollout.ActTimeOut:
		return s.move(ctx, tx, flotilla.MoveTimeOut, a.IDs, now, a.Reason)
	case rollout.ActSkip:
		return s.move(ctx, tx, flotilla.MoveSkip, a.IDs, now, a.Reason)
	case rollout.ActRelease:
		w, err := wave()
		if err != nil {
			return nil, err
		}
		return s.move(ctx, tx, flotilla.MoveRelease, a.IDs, now, fmt.Sprintf("released in wave %d", w+1))
	case rollout.ActRetry:
		return s.retry(ctx, tx, a.IDs, now)
	case rollout.ActCancel:
		return s.cancelOpen(ctx, tx, r.ID, a.IDs, now, a.Reason)
	case rollout.ActAbortWaves:
		_, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = 'aborted', finished_at = ? WHERE rollout_id = ? AND status IN ('scheduled', 'running')`), ts(now), r.ID)
		return nil, s.wrap("abort waves", err)
	case rollout.ActStartWave:
		w, err := wave()
		if err != nil {
			return nil, err
		}
		if err := s.writeWave(ctx, tx, r, w, now); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = 'running', started_at = COALESCE(started_at, ?) WHERE rollout_id = ? AND idx = ?`),
			ts(now), r.ID, w); err != nil {
			return nil, s.wrap("start wave", err)
		}
		return nil, s.startRun(ctx, tx, r.ID, w, now)
	case rollout.ActStartRun:
		w, err := wave()
		if err != nil {
			return nil, err
		}
		return nil, s.startRun(ctx, tx, r.ID, w, now)
	case rollout.ActAckErrors:
		w, err := wave()
		if err != nil {
			return nil, err
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET error_ack = 1 WHERE rollout_id = ? AND idx = ?`), r.ID, w)
		return nil, s.wrap("accept wave errors", err)
	case rollout.ActReopenWave:
		w, err := wave()
		if err != nil {
			return nil, err
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = 'running', finished_at = NULL, error_ack = 1, reason = ? WHERE rollout_id = ? AND idx = ?`), a.Reason, r.ID, w)
		return nil, s.wrap("reopen wave", err)
	case rollout.ActSuccessGate:
		w, err := wave()
		if err != nil {
			return nil, err
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET success_at = ? WHERE rollout_id = ? AND idx = ? AND success_at IS NULL`), ts(now), r.ID, w)
		return nil, s.wrap("success gate", err)
	case rollout.ActFinishWave:
		w, err := wave()
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET status = ?, finished_at = ?, reason = ? WHERE rollout_id = ? AND idx = ?`),
			string(a.WaveStatus), ts(now), a.Reason, r.ID, w); err != nil {
			return nil, s.wrap("finish wave", err)
		}
		return nil, s.endRuns(ctx, tx, r, a.Wave, now, a.Reason)
	case rollout.ActSetStatus:
		return nil, s.setRolloutStatus(ctx, tx, r, a.Status, a.Reason, now)
	}
	return nil, fmt.Errorf("unknown action %q", a.Kind)
}

// cancelOpen cancels the given open deployments of a rollout (all of them
// when ids is empty), each as flotilla.CancelOutcome says.
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
		if len(ids) > 0 && !want[t.ID] {
			continue
		}
		switch t.State = flotilla.CancelOutcome(flotilla.DeploymentState(st), retrieved.Valid); t.State {
		case flotilla.StateCanceled:
			cancel = append(cancel, t.ID)
		case flotilla.StateCancelRequested:
			ask = append(ask, t.ID)
		default:
			continue
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

// setRolloutStatus moves the rollout and ends the runs of its running
// waves when it pauses or ends.
func (s *Store) setRolloutStatus(ctx context.Context, q querier, r flotilla.Rollout, st flotilla.RolloutStatus, why string, now time.Time) error {
	var finished any
	if st.Finished() {
		finished = ts(now)
	}
	if _, err := q.ExecContext(ctx, s.q(`UPDATE rollouts SET status = ?, reason = ?, updated_at = ?, finished_at = ? WHERE id = ?`),
		string(st), why, ts(now), finished, r.ID); err != nil {
		return s.wrap("set rollout status", err)
	}
	if st == flotilla.RolloutPaused || st.Finished() {
		return s.endRuns(ctx, q, r, nil, now, string(st)+": "+why)
	}
	return nil
}
