// Package storetest is the conformance suite every store.Store passes, and
// the helpers that give tests a fresh SQLite file or PostgreSQL schema.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/testtool"
	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the variable holding the DSN of a PostgreSQL server the
// tests may use. .ci/run always sets it.
const PostgresEnv = "FLOTILLA_TEST_POSTGRES"

// PostgresDSN creates a schema of its own on the test server and returns a
// DSN whose search_path points at it; the schema is dropped when t ends. It
// skips t when PostgresEnv is unset.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		testtool.Missing(t, "PostgreSQL tests skipped: set %s to a DSN such as postgres://postgres@127.0.0.1:5432/test (.ci/run does)", PostgresEnv)
	}
	dsn, cleanup, err := NewSchema(context.Background(), base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	t.Cleanup(cleanup)
	return dsn
}

// NewSchema creates a randomly named schema on the server base names and
// returns a DSN whose search_path points at it, and a func that drops it.
func NewSchema(ctx context.Context, base string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "flotilla_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	cleanup := func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	}
	u, err := url.Parse(base)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), cleanup, nil
}
