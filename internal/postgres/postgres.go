// Package postgres opens Flotilla's scale-out store: PostgreSQL through
// pgx/v5's pool, shared by every server replica. It also carries the
// features only PostgreSQL has, such as LISTEN/NOTIFY.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/flotilla-ota/flotilla/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the embedded schema steps.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// migrationLockID is an arbitrary constant naming Flotilla's advisory lock.
const migrationLockID = 0x466c6f74

// Dialect describes PostgreSQL to sqlstore.
var Dialect = sqlstore.Dialect{
	JoinIDs:     "string_agg(id, chr(10))",
	Name:        "postgres",
	Numbered:    true,
	ArrayParams: true,
	ForUpdate:   " FOR UPDATE",
	HashLabels:  true,
	MaxParams:   65000,
	IsUniqueViolation: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
	IsDiskFull: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "53100" // disk_full
	},
	LockMigrations: func(ctx context.Context, conn *sql.Conn) (func(), error) {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
			return nil, err
		}
		return func() { conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, migrationLockID) }, nil
	},
}

// Pool opens a pgx pool for dsn and checks that it answers.
func Pool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return pool, nil
}

func config(pool *pgxpool.Pool) sqlstore.Config {
	db := stdlib.OpenDBFromPool(pool)
	return sqlstore.Config{Read: db, Write: db, Dialect: Dialect, Migrations: Migrations(),
		Closers: []func() error{func() error { pool.Close(); return nil }}}
}

// Open connects to dsn and migrates the database.
func Open(ctx context.Context, dsn string) (*sqlstore.Store, error) {
	pool, err := Pool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return sqlstore.New(ctx, config(pool))
}

// OpenWithBus connects, migrates, and also returns a Bus on the same pool
// for cross-replica messages.
func OpenWithBus(ctx context.Context, dsn string, log *slog.Logger) (*sqlstore.Store, *Bus, error) {
	pool, err := Pool(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlstore.New(ctx, config(pool))
	if err != nil {
		return nil, nil, err
	}
	return st, NewBus(pool, log), nil
}

// OpenUnmigrated connects without touching the schema.
func OpenUnmigrated(ctx context.Context, dsn string) (*sqlstore.Store, error) {
	pool, err := Pool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return sqlstore.Open(config(pool)), nil
}
