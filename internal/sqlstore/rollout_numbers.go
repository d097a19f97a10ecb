package sqlstore

import (
	"context"
	"database/sql"
	"errors"
)

// RolloutNumber implements store.Rollouts.
func (s *Store) RolloutNumber(ctx context.Context, tenant, id string) (int64, error) {
	var num int64
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT n.num FROM rollout_numbers n JOIN rollouts r ON r.id = n.rollout_id WHERE r.tenant = ? AND r.id = ?`), tenant, id).Scan(&num)
	if err == nil {
		return num, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("rollout number", err)
	}
	var n int
	if err := s.rd.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM rollouts WHERE tenant = ? AND id = ?`), tenant, id).Scan(&n); err != nil {
		return 0, s.wrap("rollout number", err)
	}
	if n == 0 {
		return 0, notFound("rollout %s not found", id)
	}
	if _, err := s.exec(ctx, "rollout number", `INSERT INTO rollout_numbers (rollout_id) VALUES (?) ON CONFLICT (rollout_id) DO NOTHING`, id); err != nil {
		return 0, err
	}
	err = s.wdb.QueryRowContext(ctx, s.q(`SELECT num FROM rollout_numbers WHERE rollout_id = ?`), id).Scan(&num)
	return num, s.wrap("rollout number", err)
}

// RolloutByNumber implements store.Rollouts.
func (s *Store) RolloutByNumber(ctx context.Context, tenant string, num int64) (string, error) {
	var id string
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT r.id FROM rollout_numbers n JOIN rollouts r ON r.id = n.rollout_id WHERE r.tenant = ? AND n.num = ?`), tenant, num).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("rollout %d not found", num)
	}
	return id, s.wrap("rollout by number", err)
}

// SetRolloutFilter implements store.Rollouts.
func (s *Store) SetRolloutFilter(ctx context.Context, tenant, id, filter, description string) error {
	if _, err := s.RolloutNumber(ctx, tenant, id); err != nil {
		return err
	}
	_, err := s.exec(ctx, "set rollout filter", `UPDATE rollout_numbers SET filter = ?, description = ? WHERE rollout_id = ?`, filter, description, id)
	return err
}

// RolloutFilter implements store.Rollouts.
func (s *Store) RolloutFilter(ctx context.Context, tenant, id string) (string, string, error) {
	var filter, desc string
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT n.filter, n.description FROM rollout_numbers n JOIN rollouts r ON r.id = n.rollout_id WHERE r.tenant = ? AND r.id = ?`), tenant, id).Scan(&filter, &desc)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	return filter, desc, s.wrap("rollout filter", err)
}
