package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// PutPolicy implements store.Policies.
func (s *Store) PutPolicy(ctx context.Context, p flotilla.NamedPolicy) (bool, error) {
	spec, _ := json.Marshal(p.Policy)
	created := false
	err := s.inTx(ctx, "put policy", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE policies SET spec = ?, updated_at = ? WHERE tenant = ? AND name = ?`), string(spec), ts(p.UpdatedAt), p.Tenant, p.Name)
		if err != nil {
			return s.wrap("put policy", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		created = true
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO policies (tenant, name, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`),
			p.Tenant, p.Name, string(spec), ts(p.CreatedAt), ts(p.UpdatedAt))
		return s.wrap("put policy", err)
	})
	return created, err
}

func scanPolicy(sc interface{ Scan(...any) error }) (flotilla.NamedPolicy, error) {
	var p flotilla.NamedPolicy
	var spec string
	var created, updated int64
	err := sc.Scan(&p.Tenant, &p.Name, &spec, &created, &updated)
	json.Unmarshal([]byte(spec), &p.Policy)
	p.CreatedAt, p.UpdatedAt = fromTS(created), fromTS(updated)
	return p, err
}

// GetPolicy implements store.Policies.
func (s *Store) GetPolicy(ctx context.Context, tenant, name string) (flotilla.NamedPolicy, error) {
	defer s.observe("get policy", time.Now())
	p, err := scanPolicy(s.rd.QueryRowContext(ctx, s.q(`SELECT tenant, name, spec, created_at, updated_at FROM policies WHERE tenant = ? AND name = ?`), tenant, name))
	if errors.Is(err, sql.ErrNoRows) {
		return p, notFound("policy %q not found", name)
	}
	return p, s.wrap("get policy", err)
}

// ListPolicies implements store.Policies.
func (s *Store) ListPolicies(ctx context.Context, tenant string) ([]flotilla.NamedPolicy, error) {
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT tenant, name, spec, created_at, updated_at FROM policies WHERE tenant = ? ORDER BY name`), tenant)
	if err != nil {
		return nil, s.wrap("list policies", err)
	}
	defer rows.Close()
	var out []flotilla.NamedPolicy
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, s.wrap("list policies", err)
		}
		out = append(out, p)
	}
	return out, s.wrap("list policies", rows.Err())
}

// DeletePolicy implements store.Policies.
func (s *Store) DeletePolicy(ctx context.Context, tenant, name string) error {
	n, err := s.exec(ctx, "delete policy", `DELETE FROM policies WHERE tenant = ? AND name = ?`, tenant, name)
	if err == nil && n == 0 {
		return notFound("policy %q not found", name)
	}
	return err
}

// PutChannel implements store.Channels.
func (s *Store) PutChannel(ctx context.Context, c flotilla.Channel) (bool, error) {
	spec, _ := json.Marshal(c.Policy)
	created := false
	err := s.inTx(ctx, "put channel", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE channels SET artifact_id = ?, artifact_name = ?, artifact_version = ?, selector = ?, policy = ?, policy_name = ?,
			waves = ?, rollout_id = ?, updated_at = ? WHERE tenant = ? AND name = ?`),
			nullInt(c.ArtifactID), c.ArtifactName, c.ArtifactVersion, c.Selector, string(spec), c.PolicyName, c.Waves, c.RolloutID, ts(c.UpdatedAt), c.Tenant, c.Name)
		if err != nil {
			return s.wrap("put channel", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		created = true
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO channels (tenant, name, artifact_id, artifact_name, artifact_version, selector, policy, policy_name, waves, rollout_id, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			c.Tenant, c.Name, nullInt(c.ArtifactID), c.ArtifactName, c.ArtifactVersion, c.Selector, string(spec), c.PolicyName, c.Waves, c.RolloutID, ts(c.CreatedAt), ts(c.UpdatedAt))
		return s.wrap("put channel", err)
	})
	return created, err
}

const channelCols = `tenant, name, artifact_id, artifact_name, artifact_version, selector, policy, policy_name, waves, rollout_id, created_at, updated_at`

func scanChannel(sc interface{ Scan(...any) error }) (flotilla.Channel, error) {
	var c flotilla.Channel
	var artifactID sql.NullInt64
	var spec string
	var created, updated int64
	err := sc.Scan(&c.Tenant, &c.Name, &artifactID, &c.ArtifactName, &c.ArtifactVersion, &c.Selector, &spec, &c.PolicyName, &c.Waves, &c.RolloutID, &created, &updated)
	c.ArtifactID = artifactID.Int64
	json.Unmarshal([]byte(spec), &c.Policy)
	c.CreatedAt, c.UpdatedAt = fromTS(created), fromTS(updated)
	return c, err
}

// GetChannel implements store.Channels.
func (s *Store) GetChannel(ctx context.Context, tenant, name string) (flotilla.Channel, error) {
	c, err := scanChannel(s.rd.QueryRowContext(ctx, s.q(`SELECT `+channelCols+` FROM channels WHERE tenant = ? AND name = ?`), tenant, name))
	if errors.Is(err, sql.ErrNoRows) {
		return c, notFound("channel %q not found", name)
	}
	return c, s.wrap("get channel", err)
}

// ListChannels implements store.Channels.
func (s *Store) ListChannels(ctx context.Context, tenant string) ([]flotilla.Channel, error) {
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT `+channelCols+` FROM channels WHERE tenant = ? ORDER BY name`), tenant)
	if err != nil {
		return nil, s.wrap("list channels", err)
	}
	defer rows.Close()
	var out []flotilla.Channel
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, s.wrap("list channels", err)
		}
		out = append(out, c)
	}
	return out, s.wrap("list channels", rows.Err())
}

// DeleteChannel implements store.Channels.
func (s *Store) DeleteChannel(ctx context.Context, tenant, name string) error {
	n, err := s.exec(ctx, "delete channel", `DELETE FROM channels WHERE tenant = ? AND name = ?`, tenant, name)
	if err == nil && n == 0 {
		return notFound("channel %q not found", name)
	}
	return err
}
