// Package sqlite opens Flotilla's embedded store: one SQLite file through the
// cgo-free modernc.org/sqlite driver, in WAL mode with foreign keys on.
//
// Reads use a pool of connections; writes go through a single connection
// with immediate transactions, which is how SQLite wants concurrent writers
// from one process (no SQLITE_BUSY upgrades, no retries).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/flotilla-ota/flotilla/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the embedded schema steps.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Dialect describes SQLite to sqlstore.
var Dialect = sqlstore.Dialect{
	JoinIDs:         "group_concat(id, char(10))",
	Name:            "sqlite",
	MaxParams:       32000,
	CacheStatements: true,
	GroupCommit:     true,
	IsUniqueViolation: func(err error) bool {
		var se *sqlite.Error
		if errors.As(err, &se) {
			c := se.Code()
			return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		}
		return false
	},
	IsDiskFull: func(err error) bool {
		var se *sqlite.Error
		return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL
	},
}

func config(path string) (sqlstore.Config, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return sqlstore.Config{}, fmt.Errorf("create database dir: %w", err)
		}
	}
	// The database holds hashes and sealed secrets; only the server's user
	// reads it. SQLite gives its -wal and -shm files the database file's
	// mode.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return sqlstore.Config{}, fmt.Errorf("create database file: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !os.IsNotExist(err) {
			return sqlstore.Config{}, fmt.Errorf("database file mode: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Readers get 16 MiB of page cache each; the writer, which inserts a
	// rollout's deployments into five indexes at once, gets 64 MiB.
	q.Add("_pragma", "cache_size(-16384)")
	read, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return sqlstore.Config{}, fmt.Errorf("open sqlite: %w", err)
	}
	// Every reader stays open: a closed one takes its page cache and its
	// prepared statements with it, and the next is parsed all over again.
	read.SetMaxOpenConns(max(4, runtime.NumCPU()))
	read.SetMaxIdleConns(max(4, runtime.NumCPU()))
	q.Set("_txlock", "immediate")
	q["_pragma"][len(q["_pragma"])-1] = "cache_size(-65536)"
	q.Add("_pragma", "temp_store(MEMORY)")
	// The writer checkpoints the WAL into the database when it commits
	// past this many pages. SQLite's 1,000 (4 MiB) copied the same hot
	// index pages back over and over while a fleet reported: at 100k
	// devices checkpoints were 6% of the server's CPU, on the single
	// writer's path. 16,384 pages keep the WAL under 64 MiB, and one
	// large transaction's WAL is cut back to that once it is copied.
	q.Add("_pragma", "wal_autocheckpoint(16384)")
	q.Add("_pragma", "journal_size_limit(67108864)")
	write, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		read.Close()
		return sqlstore.Config{}, fmt.Errorf("open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	return sqlstore.Config{Read: read, Write: write, Dialect: Dialect, Migrations: Migrations()}, nil
}

// Open opens (creating if needed) the database file at path and migrates it.
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	cfg, err := config(path)
	if err != nil {
		return nil, err
	}
	return sqlstore.New(ctx, cfg)
}

// OpenUnmigrated opens the file without touching its schema.
func OpenUnmigrated(path string) (*sqlstore.Store, error) {
	cfg, err := config(path)
	if err != nil {
		return nil, err
	}
	return sqlstore.Open(cfg), nil
}
