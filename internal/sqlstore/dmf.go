package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// SetDeviceDMF implements store.DMF.
func (s *Store) SetDeviceDMF(ctx context.Context, tenant, id, link, exchange string) error {
	n, err := s.exec(ctx, "set device dmf", `UPDATE devices SET dmf_link = ?, dmf_exchange = ? WHERE tenant = ? AND id = ?`, link, nullString(exchange), tenant, id)
	if err == nil && n == 0 {
		return notFound("device %q not found", id)
	}
	return err
}

// EnqueueDMF implements store.DMF.
func (s *Store) EnqueueDMF(ctx context.Context, m store.DMFMessage) error {
	var dep any
	if m.DeploymentID != 0 {
		dep = m.DeploymentID
	}
	_, err := s.exec(ctx, "enqueue dmf", `INSERT INTO dmf_outbox (tenant, device_id, deployment_id, state, exchange, link, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		m.Tenant, m.DeviceID, dep, m.State, m.Exchange, m.Link, ts(m.CreatedAt))
	return err
}

// ClaimDMF implements store.DMF. The lease is taken in one statement, so
// replicas never publish the same message at once.
func (s *Store) ClaimDMF(ctx context.Context, owner, link string, now, until time.Time, limit int) ([]store.DMFMessage, error) {
	defer s.observe("claim dmf", time.Now())
	var out []store.DMFMessage
	err := s.inTx(ctx, "claim dmf", func(tx *Tx) error {
		lock := ""
		if s.d.ForUpdate != "" {
			lock = s.d.ForUpdate + " SKIP LOCKED"
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT o.id, o.tenant, o.device_id, o.deployment_id, o.state, o.exchange, o.link, o.created_at FROM dmf_outbox o
			WHERE (o.claimed_until IS NULL OR o.claimed_until < ?)
			AND (o.link = ? OR o.link = '' AND EXISTS (SELECT 1 FROM devices v WHERE v.tenant = o.tenant AND v.id = o.device_id AND v.dmf_link = ?))
			ORDER BY o.id LIMIT ?`+lock), ts(now), link, link, limit)
		if err != nil {
			return s.wrap("claim dmf", err)
		}
		var ids []any
		for rows.Next() {
			var m store.DMFMessage
			var dep sql.NullInt64
			var created int64
			if err := rows.Scan(&m.ID, &m.Tenant, &m.DeviceID, &dep, &m.State, &m.Exchange, &m.Link, &created); err != nil {
				rows.Close()
				return s.wrap("claim dmf", err)
			}
			m.DeploymentID, m.CreatedAt = dep.Int64, fromTS(created)
			out = append(out, m)
			ids = append(ids, m.ID)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(ids) == 0 {
			return s.wrap("claim dmf", err)
		}
		args := append([]any{owner, ts(until)}, ids...)
		_, err = tx.ExecContext(ctx, s.q(`UPDATE dmf_outbox SET claimed_by = ?, claimed_until = ? WHERE id IN (`+placeholders(len(ids))+`)`), args...)
		return s.wrap("claim dmf", err)
	})
	return out, err
}

// DoneDMF implements store.DMF.
func (s *Store) DoneDMF(ctx context.Context, id, deploymentID int64, topic string, now time.Time) error {
	return s.inTx(ctx, "dmf done", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM dmf_outbox WHERE id = ?`), id); err != nil {
			return s.wrap("dmf done", err)
		}
		if deploymentID == 0 || topic == "" {
			return nil
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO dmf_sent (deployment_id, topic, sent_at) VALUES (?, ?, ?)
			ON CONFLICT (deployment_id) DO UPDATE SET topic = excluded.topic, sent_at = excluded.sent_at`), deploymentID, topic, ts(now))
		return s.wrap("dmf done", err)
	})
}

// LastDMF implements store.DMF.
func (s *Store) LastDMF(ctx context.Context, deploymentID int64) (string, error) {
	var topic string
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT topic FROM dmf_sent WHERE deployment_id = ?`), deploymentID).Scan(&topic)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return topic, s.wrap("last dmf", err)
}

// OpenDMFWindows implements store.DMF.
func (s *Store) OpenDMFWindows(ctx context.Context) ([]flotilla.Deployment, error) {
	defer s.observe("open dmf windows", time.Now())
	var cols []string
	for _, c := range strings.Split(deploymentCols, ",") {
		cols = append(cols, "d."+strings.TrimSpace(c))
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT `+strings.Join(cols, ", ")+` FROM deployments d JOIN devices v ON v.tenant = d.tenant AND v.id = d.device_id
		WHERE v.dmf_exchange IS NOT NULL AND d.state IN ('pending', 'downloading', 'downloaded') AND d.maint_window IS NOT NULL`))
	if err != nil {
		return nil, s.wrap("open dmf windows", err)
	}
	defer rows.Close()
	var out []flotilla.Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, s.wrap("open dmf windows", err)
		}
		out = append(out, d)
	}
	return out, s.wrap("open dmf windows", rows.Err())
}
