package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

const deploymentCols = `id, tenant, device_id, artifact_id, artifact_name, artifact_version, rollout_id, wave, attempt, type, force_at,
	maint_window, delivery, update_id, state, prev_state, progress_cnt, progress_of, healthy, message,
	created_at, updated_at, started_at, retrieved_at, finished_at, device_events`

// openStates are the states of deployments that still occupy a device:
// scheduled and the domain's active states.
var openStates = stateList(append([]flotilla.DeploymentState{flotilla.StateScheduled}, flotilla.ActiveStates...))

// stateList renders states as an SQL list literal: ('a', 'b').
func stateList(states []flotilla.DeploymentState) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, st := range states {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("'" + string(st) + "'")
	}
	b.WriteByte(')')
	return b.String()
}

func scanDeployment(sc interface{ Scan(...any) error }) (flotilla.Deployment, error) {
	var d flotilla.Deployment
	var artifactID, forceAt, healthy, started, retrieved, finished sql.NullInt64
	var rollout, window, updateID sql.NullString
	var typ, state, prev string
	var created, updated int64
	err := sc.Scan(&d.ID, &d.Tenant, &d.DeviceID, &artifactID, &d.ArtifactName, &d.ArtifactVersion, &rollout, &d.Wave, &d.Attempt,
		&typ, &forceAt, &window, &d.Delivery, &updateID, &state, &prev, &d.ProgressCnt, &d.ProgressOf, &healthy, &d.Message,
		&created, &updated, &started, &retrieved, &finished, &d.DeviceEvents)
	if err != nil {
		return d, err
	}
	d.ArtifactID = artifactID.Int64
	d.RolloutID, d.UpdateID = rollout.String, updateID.String
	d.Type, d.State, d.PrevState = flotilla.DeploymentType(typ), flotilla.DeploymentState(state), flotilla.DeploymentState(prev)
	d.ForceAt, d.Window = fromNullTS(forceAt), windowOf(window)
	if healthy.Valid {
		h := healthy.Int64 == 1
		d.Healthy = &h
	}
	d.CreatedAt, d.UpdatedAt = fromTS(created), fromTS(updated)
	d.StartedAt, d.RetrievedAt, d.FinishedAt = fromNullTS(started), fromNullTS(retrieved), fromNullTS(finished)
	return d, nil
}

// windowOf reads a maint_window column: nil when empty.
func windowOf(window sql.NullString) *flotilla.MaintenanceWindow {
	if !window.Valid || window.String == "" {
		return nil
	}
	var w flotilla.MaintenanceWindow
	if json.Unmarshal([]byte(window.String), &w) != nil {
		return nil
	}
	return &w
}

func nullInt(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}

func windowJSON(w *flotilla.MaintenanceWindow) any {
	if w == nil {
		return nil
	}
	b, _ := json.Marshal(w)
	return string(b)
}

func healthyValue(h *bool) any {
	if h == nil {
		return nil
	}
	return boolInt(*h)
}

func (s *Store) insertEvent(ctx context.Context, q querier, depID int64, ev flotilla.DeploymentEvent) error {
	details := "[]"
	if len(ev.Details) > 0 {
		b, _ := json.Marshal(ev.Details)
		details = string(b)
	}
	var code any
	if ev.Code != nil {
		code = *ev.Code
	}
	_, err := q.ExecContext(ctx, s.q(`INSERT INTO deployment_events (deployment_id, at, state, execution, finished, cnt, of_total, code, details, source)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), depID, ts(ev.At), string(ev.State), ev.Execution, ev.Finished, ev.Cnt, ev.Of, code, details, ev.Source)
	return s.wrap("insert deployment event", err)
}

// CreateDeployment implements store.Deployments.
func (s *Store) CreateDeployment(ctx context.Context, d *flotilla.Deployment, ev flotilla.DeploymentEvent) ([]store.Superseded, error) {
	var sup []store.Superseded
	err := s.inTx(ctx, "create deployment", func(tx *Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM devices WHERE tenant = ? AND id = ?`), d.Tenant, d.DeviceID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("device %q not found", d.DeviceID)
		}
		if err != nil {
			return s.wrap("create deployment", err)
		}
		if sup, err = s.supersede(ctx, tx, d.Tenant, d.DeviceID, d.CreatedAt, "superseded by a new assignment"); err != nil {
			return err
		}
		if err := s.insertDeployment(ctx, tx, d); err != nil {
			return err
		}
		ev.State = d.State
		return s.insertEvent(ctx, tx, d.ID, ev)
	})
	return sup, err
}

func (s *Store) insertDeployment(ctx context.Context, q querier, d *flotilla.Deployment) error {
	var rollout, updateID any
	if d.RolloutID != "" {
		rollout = d.RolloutID
	}
	if d.UpdateID != "" {
		updateID = d.UpdateID
	}
	err := q.QueryRowContext(ctx, s.q(`INSERT INTO deployments (tenant, device_id, artifact_id, artifact_name, artifact_version, rollout_id, wave, attempt,
		type, force_at, maint_window, delivery, update_id, state, prev_state, progress_cnt, progress_of, healthy, message,
		created_at, updated_at, started_at, retrieved_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		d.Tenant, d.DeviceID, nullInt(d.ArtifactID), d.ArtifactName, d.ArtifactVersion, rollout, d.Wave, d.Attempt,
		string(d.Type), tsPtr(d.ForceAt), windowJSON(d.Window), d.Delivery, updateID, string(d.State), string(d.PrevState),
		d.ProgressCnt, d.ProgressOf, healthyValue(d.Healthy), d.Message, ts(d.CreatedAt), ts(d.UpdatedAt),
		tsPtr(d.StartedAt), tsPtr(d.RetrievedAt), tsPtr(d.FinishedAt)).Scan(&d.ID)
	if err != nil {
		err = s.wrap("insert deployment", err)
		if flotilla.IsCode(err, flotilla.EConflict) {
			return flotilla.Errorf(flotilla.EConflict, "device %q already has this deployment", d.DeviceID)
		}
	}
	return err
}

// supersede moves the device's open deployments out of the way of a new
// one: never-delivered ones are canceled on the server, running ones get a
// cancel request the device answers through DDI.
func (s *Store) supersede(ctx context.Context, tx *Tx, tenant, deviceID string, now time.Time, why string) ([]store.Superseded, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id, state, retrieved_at, rollout_id FROM deployments
		WHERE tenant = ? AND device_id = ? AND state IN `+openStates+s.d.ForUpdate), tenant, deviceID)
	if err != nil {
		return nil, s.wrap("supersede", err)
	}
	type open struct {
		id        int64
		state     flotilla.DeploymentState
		retrieved bool
		rollout   string
	}
	var opens []open
	for rows.Next() {
		var o open
		var st string
		var retrieved sql.NullInt64
		var rollout sql.NullString
		if err := rows.Scan(&o.id, &st, &retrieved, &rollout); err != nil {
			rows.Close()
			return nil, s.wrap("supersede", err)
		}
		o.state, o.retrieved, o.rollout = flotilla.DeploymentState(st), retrieved.Valid, rollout.String
		opens = append(opens, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.wrap("supersede", err)
	}
	var out []store.Superseded
	for _, o := range opens {
		to := flotilla.CancelOutcome(o.state, o.retrieved)
		switch to {
		case "":
			continue
		case flotilla.StateCanceled:
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE deployments SET state = 'canceled', updated_at = ?, finished_at = ?, message = ? WHERE id = ?`),
				ts(now), ts(now), why, o.id); err != nil {
				return nil, s.wrap("supersede", err)
			}
		default:
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE deployments SET prev_state = state, state = 'cancel_requested', updated_at = ?, message = ? WHERE id = ?`),
				ts(now), why, o.id); err != nil {
				return nil, s.wrap("supersede", err)
			}
		}
		out = append(out, store.Superseded{ID: o.id, DeviceID: deviceID, RolloutID: o.rollout, State: to})
		if err := s.insertEvent(ctx, tx, o.id, flotilla.DeploymentEvent{At: now, State: to, Details: []string{why}, Source: flotilla.SourceServer}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GetDeployment implements store.Deployments.
func (s *Store) GetDeployment(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error) {
	defer s.observe("get deployment", time.Now())
	d, err := s.GetDeploymentBrief(ctx, tenant, id)
	if err != nil {
		return d, err
	}
	hist, err := s.history(ctx, s.rd, []int64{d.ID})
	d.History = withScheduled(d, hist[d.ID])
	return d, err
}

// GetDeploymentBrief implements store.Deployments.
func (s *Store) GetDeploymentBrief(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error) {
	d, err := scanDeployment(s.rd.QueryRowContext(ctx, s.q(`SELECT `+deploymentCols+` FROM deployments WHERE tenant = ? AND id = ?`), tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("deployment %d not found", id)
	}
	return d, s.wrap("get deployment", err)
}

// withScheduled puts the "scheduled" entry at the head of a rollout
// deployment's history. Starting a rollout does not write one row per
// device for it (over 100k devices that doubled the cost of the start); it
// is implied by the deployment's creation.
func withScheduled(d flotilla.Deployment, hist []flotilla.DeploymentEvent) []flotilla.DeploymentEvent {
	if d.RolloutID == "" || d.Attempt > 1 || (len(hist) > 0 && hist[0].State == flotilla.StateScheduled) {
		return hist
	}
	return append([]flotilla.DeploymentEvent{{At: d.CreatedAt, State: flotilla.StateScheduled, Source: "server",
		Details: []string{"scheduled by rollout " + d.RolloutID}}}, hist...)
}

// history loads the events of the given deployments, oldest first.
func (s *Store) history(ctx context.Context, q querier, ids []int64) (map[int64][]flotilla.DeploymentEvent, error) {
	out := map[int64][]flotilla.DeploymentEvent{}
	if len(ids) == 0 {
		return out, nil
	}
	ph := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := q.QueryContext(ctx, s.q(`SELECT deployment_id, at, state, execution, finished, cnt, of_total, code, details, source
		FROM deployment_events WHERE deployment_id IN (`+ph+`) ORDER BY id`), args...)
	if err != nil {
		return nil, s.wrap("deployment history", err)
	}
	defer rows.Close()
	for rows.Next() {
		var depID, at int64
		var ev flotilla.DeploymentEvent
		var state, details string
		var code sql.NullInt64
		if err := rows.Scan(&depID, &at, &state, &ev.Execution, &ev.Finished, &ev.Cnt, &ev.Of, &code, &details, &ev.Source); err != nil {
			return nil, s.wrap("deployment history", err)
		}
		ev.At, ev.State = fromTS(at), flotilla.DeploymentState(state)
		if code.Valid {
			c := int(code.Int64)
			ev.Code = &c
		}
		_ = json.Unmarshal([]byte(details), &ev.Details)
		out[depID] = append(out[depID], ev)
	}
	return out, s.wrap("deployment history", rows.Err())
}

// ListDeviceDeployments implements store.Deployments.
func (s *Store) ListDeviceDeployments(ctx context.Context, tenant, deviceID string, limit int) ([]flotilla.Deployment, error) {
	defer s.observe("list device deployments", time.Now())
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT `+deploymentCols+` FROM deployments WHERE tenant = ? AND device_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`), tenant, deviceID, limit)
	if err != nil {
		return nil, s.wrap("list deployments", err)
	}
	var out []flotilla.Deployment
	var ids []int64
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			rows.Close()
			return nil, s.wrap("list deployments", err)
		}
		out = append(out, d)
		ids = append(ids, d.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list deployments", err)
	}
	hist, err := s.history(ctx, s.rd, ids)
	for i := range out {
		out[i].History = withScheduled(out[i], hist[out[i].ID])
	}
	return out, err
}

// DeviceActions implements store.Deployments.
func (s *Store) DeviceActions(ctx context.Context, tenant, deviceID string) ([]flotilla.Deployment, *flotilla.Deployment, error) {
	defer s.observe("device actions", time.Now())
	p, err := s.devicePoll(ctx, tenant, deviceID, "")
	return p.Open, p.Installed, err
}

// UpdateDeployment implements store.Deployments. Where the dialect asks for
// it, concurrent updates share one transaction (see groupCommit).
func (s *Store) UpdateDeployment(ctx context.Context, tenant, deviceID string, id int64, fn func(flotilla.Deployment) (flotilla.Change, error)) (flotilla.Deployment, error) {
	var out flotilla.Deployment
	err := s.write(ctx, "update deployment", func(ctx context.Context, tx *Tx) error {
		var err error
		out, err = s.updateDeployment(ctx, tx, tenant, deviceID, id, fn)
		return err
	})
	if err != nil {
		return flotilla.Deployment{}, err
	}
	return out, nil
}

func (s *Store) updateDeployment(ctx context.Context, tx *Tx, tenant, deviceID string, id int64, fn func(flotilla.Deployment) (flotilla.Change, error)) (flotilla.Deployment, error) {
	d, err := scanDeployment(tx.QueryRowContext(ctx, s.q(`SELECT `+deploymentCols+` FROM deployments WHERE tenant = ? AND id = ? AND (? = '' OR device_id = ?)`+s.d.ForUpdate),
		tenant, id, deviceID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("deployment %d not found", id)
	}
	if err != nil {
		return d, s.wrap("update deployment", err)
	}
	ch, err := fn(d)
	if err != nil {
		return d, err
	}
	n := ch.Deployment
	if n.ID != d.ID || n.Tenant != d.Tenant || n.DeviceID != d.DeviceID {
		return d, fmt.Errorf("update deployment %d: identity changed", id)
	}
	events := ch.Earlier
	if ch.Event != nil {
		events = append(slices.Clip(events), *ch.Event)
	}
	n.DeviceEvents = d.DeviceEvents
	for _, ev := range events {
		if ev.Source == flotilla.SourceDevice {
			n.DeviceEvents++
		}
	}
	var set setList
	set.set("prev_state", string(n.PrevState))
	set.set("progress_cnt", n.ProgressCnt)
	set.set("progress_of", n.ProgressOf)
	set.set("message", n.Message)
	set.set("updated_at", ts(n.UpdatedAt))
	set.set("started_at", tsPtr(n.StartedAt))
	set.set("finished_at", tsPtr(n.FinishedAt))
	set.set("force_at", tsPtr(n.ForceAt))
	set.set("type", string(n.Type))
	set.set("device_events", n.DeviceEvents)
	set.changed("state", string(d.State), string(n.State))
	set.changed("retrieved_at", tsPtr(d.RetrievedAt), tsPtr(n.RetrievedAt))
	set.changed("healthy", healthyValue(d.Healthy), healthyValue(n.Healthy))
	set.changed("update_id", nullString(d.UpdateID), nullString(n.UpdateID))
	_, err = tx.ExecContext(ctx, s.q(`UPDATE deployments SET `+set.String()+` WHERE id = ?`), append(set.args, id)...)
	if err != nil {
		return d, s.wrap("update deployment", err)
	}
	for _, ev := range events {
		if ev.State == "" {
			ev.State = n.State
		}
		if err := s.insertEvent(ctx, tx, id, ev); err != nil {
			return d, err
		}
	}
	if n.State.Terminal() && !d.State.Terminal() && s.NotifyFinal != nil {
		if channel, payload := s.NotifyFinal(n); channel != "" {
			if _, err := tx.ExecContext(ctx, s.q(`SELECT pg_notify(?, ?)`), channel, payload); err != nil {
				return d, s.wrap("notify final state", err)
			}
		}
	}
	if ch.Installed {
		version := ch.DeviceVersion
		if version == "" {
			version = n.ArtifactVersion
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET attrs_requested = 1, version = ?, updated_at = ? WHERE tenant = ? AND id = ?`),
			version, ts(n.UpdatedAt), n.Tenant, n.DeviceID); err != nil {
			return d, s.wrap("update deployment", err)
		}
	}
	return n, nil
}

// OpenWindowedDeployments implements store.Deployments.
func (s *Store) OpenWindowedDeployments(ctx context.Context) ([]flotilla.Deployment, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE rollout_id IS NULL AND maint_window IS NOT NULL AND state IN `+openStates+` AND state <> 'cancel_requested'`)
	if err != nil {
		return nil, s.wrap("windowed deployments", err)
	}
	defer rows.Close()
	var out []flotilla.Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, s.wrap("windowed deployments", err)
		}
		out = append(out, d)
	}
	return out, s.wrap("windowed deployments", rows.Err())
}

// ArtifactAssigned implements store.Deployments.
func (s *Store) ArtifactAssigned(ctx context.Context, tenant, deviceID string, artifactID int64) (bool, error) {
	var n int
	// "+artifact_id" keeps SQLite on the (tenant, device_id) index: the
	// artifact index would scan every device the artifact went to.
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM deployments WHERE tenant = ? AND device_id = ? AND +artifact_id = ?`), tenant, deviceID, artifactID).Scan(&n)
	return n > 0, s.wrap("artifact assigned", err)
}

// SetAttributesRequested implements store.Deployments.
func (s *Store) SetAttributesRequested(ctx context.Context, tenant, deviceID string, on bool) error {
	n, err := s.exec(ctx, "set attributes requested", `UPDATE devices SET attrs_requested = ? WHERE tenant = ? AND id = ?`, boolInt(on), tenant, deviceID)
	if err == nil && n == 0 {
		return notFound("device %q not found", deviceID)
	}
	return err
}

// AttributesRequested implements store.Deployments.
func (s *Store) AttributesRequested(ctx context.Context, tenant, deviceID string) (bool, error) {
	var on bool
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT attrs_requested FROM devices WHERE tenant = ? AND id = ?`), tenant, deviceID).Scan(&on)
	if errors.Is(err, sql.ErrNoRows) {
		return false, notFound("device %q not found", deviceID)
	}
	return on, s.wrap("attributes requested", err)
}
