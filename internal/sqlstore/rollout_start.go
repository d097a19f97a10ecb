package sqlstore

// Choosing a rollout's devices, writing its waves and deployments, and
// starting it: the bulk work done once per rollout.

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
	"github.com/flotilla-ota/flotilla/rollout"
)

// RolloutMembers implements store.Rollouts.
func (s *Store) RolloutMembers(ctx context.Context, tenant string, selector string) ([]rollout.Member, error) {
	defer s.observe("rollout members", time.Now())
	sel, err := label.Parse(selector)
	if err != nil {
		return nil, err
	}
	if sets, how, err := s.matchSets(ctx, tenant, sel); err != nil {
		return nil, err
	} else if how != scanDevices {
		return s.membersInSets(ctx, tenant, sets)
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT id, labels FROM devices WHERE tenant = ? ORDER BY id`), tenant)
	if err != nil {
		return nil, s.wrap("rollout members", err)
	}
	defer rows.Close()
	var out []rollout.Member
	// Fleets repeat the same few label sets: decode and match each once
	// (members share the read-only map).
	type decided struct {
		labels map[string]string
		match  bool
	}
	seen := map[string]decided{}
	for rows.Next() {
		var id string
		var labels sql.RawBytes
		if err := rows.Scan(&id, &labels); err != nil {
			return nil, s.wrap("rollout members", err)
		}
		d, ok := seen[string(labels)]
		if !ok {
			m := decodeMap(string(labels))
			d = decided{labels: m, match: sel.Matches(m)}
			if len(seen) < 100_000 {
				seen[string(labels)] = d
			}
		}
		if d.match {
			out = append(out, rollout.Member{ID: id, Labels: d.labels})
		}
	}
	return out, s.wrap("rollout members", rows.Err())
}

// MaterializeRollout implements store.Rollouts.
func (s *Store) MaterializeRollout(ctx context.Context, id string, members []string, assign []int, waves []flotilla.Wave, now time.Time) error {
	return s.inTx(ctx, "materialize rollout", func(tx *Tx) error {
		if err := s.snapshotStart(ctx, tx, id); err != nil {
			return err
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
		return s.recordWaves(ctx, tx, id, len(members), waves, now)
	})
}

// snapshotStart checks that a rollout is creating and clears what an
// earlier, failed snapshot may have left.
func (s *Store) snapshotStart(ctx context.Context, tx *Tx, id string) error {
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
	return nil
}

// recordWaves writes a snapshot's waves and makes the rollout ready.
func (s *Store) recordWaves(ctx context.Context, tx *Tx, id string, total int, waves []flotilla.Wave, now time.Time) error {
	for _, w := range waves {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO rollout_waves (rollout_id, idx, name, size, status) VALUES (?, ?, ?, ?, ?)`),
			id, w.Index, w.Name, w.Size, string(flotilla.WaveScheduled)); err != nil {
			return s.wrap("materialize rollout", err)
		}
	}
	_, err := tx.ExecContext(ctx, s.q(`UPDATE rollouts SET status = 'ready', total = ?, updated_at = ?, version = version + 1 WHERE id = ?`), total, ts(now), id)
	return s.wrap("materialize rollout", err)
}

// errFleetChanged rolls back an even snapshot whose devices changed
// between counting and writing them (PostgreSQL reads each statement
// afresh).
var errFleetChanged = errors.New("the fleet changed during the snapshot")

// MaterializeEvenRollout implements store.Rollouts. The devices come from
// the label-set index; each wave is one INSERT … SELECT of an id range,
// whose end is found by skipping the wave's size from its start.
func (s *Store) MaterializeEvenRollout(ctx context.Context, id string, n int, now time.Time) (bool, error) {
	r, err := s.getRollout(ctx, s.rd, "", id)
	if err != nil {
		return false, err
	}
	sel, err := label.Parse(r.Selector)
	if err != nil {
		return false, err
	}
	sets, how, err := s.matchSets(ctx, r.Tenant, sel)
	if err != nil || how == scanDevices {
		return false, err
	}
	members, setArgs := `FROM devices WHERE tenant = ?`, []any{r.Tenant}
	if how == inSets {
		setArgs = append(setArgs, -1) // matches no set: IN () is not SQL
		for _, ls := range sets {
			setArgs = append(setArgs, ls.id)
		}
		members += ` AND label_set IN (` + placeholders(len(setArgs)-1) + `)`
	}
	// args are what members needs, between before and after.
	args := func(before []any, after ...any) []any {
		return append(append(before, setArgs...), after...)
	}
	err = s.inTx(ctx, "materialize rollout", func(tx *Tx) error {
		if err := s.snapshotStart(ctx, tx, id); err != nil {
			return err
		}
		var total int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) `+members), setArgs...).Scan(&total); err != nil {
			return s.wrap("materialize rollout", err)
		}
		defs, err := rollout.EvenWaves(total, n)
		if err != nil {
			return err
		}
		from := "" // below every id
		for w, d := range defs {
			var res sql.Result
			if w == len(defs)-1 {
				res, err = tx.ExecContext(ctx, s.q(`INSERT INTO rollout_devices (rollout_id, device_id, wave) SELECT ?, id, ? `+members+` AND id >= ?`), args([]any{id, w}, from)...)
			} else {
				// The next wave's first id; none when the devices end here.
				var to string
				err = tx.QueryRowContext(ctx, s.q(`SELECT id `+members+` AND id >= ? ORDER BY id LIMIT 1 OFFSET ?`), args(nil, from, d.Size)...).Scan(&to)
				if errors.Is(err, sql.ErrNoRows) && d.Size == 0 {
					continue // no devices at all
				}
				if errors.Is(err, sql.ErrNoRows) {
					return errFleetChanged
				}
				if err != nil {
					return s.wrap("materialize rollout", err)
				}
				res, err = tx.ExecContext(ctx, s.q(`INSERT INTO rollout_devices (rollout_id, device_id, wave) SELECT ?, id, ? `+members+` AND id >= ? AND id < ?`), args([]any{id, w}, from, to)...)
				from = to
			}
			if err != nil {
				return s.wrap("materialize rollout", err)
			}
			if written, err := res.RowsAffected(); err != nil || written != int64(d.Size) {
				return errFleetChanged
			}
		}
		return s.recordWaves(ctx, tx, id, total, rollout.Waves(defs), now)
	})
	if errors.Is(err, errFleetChanged) {
		return false, nil
	}
	return err == nil, err
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
		// Other rollouts' members must have their deployments for this
		// start to supersede them.
		if err := s.writeOthersPending(ctx, tx, r.Tenant, id, now); err != nil {
			return err
		}
		if sup, err = s.supersedeForRollout(ctx, tx, r, now); err != nil {
			return err
		}
		// Deployments newer than this, made elsewhere, supersede members
		// of waves written later (see writeWave).
		var after int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM deployments`).Scan(&after); err != nil {
			return s.wrap("start rollout", err)
		}
		wave := -1 // all of them
		if r.Total > s.writeWholeUpTo() {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE rollout_waves SET written = 0 WHERE rollout_id = ? AND idx > 0`), id); err != nil {
				return s.wrap("start rollout", err)
			}
			wave = 0
		}
		if err := s.insertScheduled(ctx, tx, r, wave, now); err != nil {
			return err
		}
		// The "scheduled" history entry of each deployment is implied by its
		// creation (see withScheduled), not written here.
		_, err = tx.ExecContext(ctx, s.q(`UPDATE rollouts SET status = 'running', started_at = ?, updated_at = ?, reason = '', version = version + 1, written_after = ? WHERE id = ?`),
			ts(now), ts(now), after, id)
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
		to := flotilla.CancelOutcome(flotilla.DeploymentState(st), retrieved.Valid)
		switch to {
		case flotilla.StateCanceled:
			cancel = append(cancel, id)
		case flotilla.StateCancelRequested:
			ask = append(ask, id)
		default:
			continue
		}
		out = append(out, store.Superseded{ID: id, DeviceID: dev, RolloutID: rollout.String, State: to})
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
