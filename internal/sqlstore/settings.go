package sqlstore

import (
	"context"
	"database/sql"
	"errors"
)

// Setting implements store.Settings.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM server_settings WHERE name = ?`), name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("setting %q not found", name)
	}
	return v, s.wrap("get setting", err)
}

// PutSetting implements store.Settings.
func (s *Store) PutSetting(ctx context.Context, name, value string) error {
	_, err := s.exec(ctx, "put setting", `INSERT INTO server_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	return err
}

// InitSetting implements store.Settings.
func (s *Store) InitSetting(ctx context.Context, name, value string) (string, error) {
	if _, err := s.exec(ctx, "init setting", `INSERT INTO server_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
		return "", err
	}
	return s.Setting(ctx, name)
}
