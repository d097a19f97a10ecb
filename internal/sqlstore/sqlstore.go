// Package sqlstore implements store.Store once, in SQL that both SQLite and
// PostgreSQL accept. The sqlite and postgres packages open connections, hold
// their dialect's migrations and hand both to New; nothing here knows which
// database it talks to beyond the Dialect.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// Dialect is what differs between databases.
type Dialect struct {
	Name string
	// Numbered placeholders ($1) instead of '?'.
	Numbered bool
	// IsUniqueViolation recognizes a unique-constraint error.
	IsUniqueViolation func(error) bool
	// IsDiskFull recognizes a write refused for lack of disk space.
	IsDiskFull func(error) bool
	// MaxParams bounds the placeholders of one statement.
	MaxParams int
	// ForUpdate is appended to a SELECT that is about to be updated in the
	// same transaction (" FOR UPDATE"); empty where transactions are
	// serialized anyway (SQLite).
	ForUpdate string
	// CacheStatements prepares read queries once, for drivers that do not
	// cache prepared statements themselves.
	CacheStatements bool
	// GroupCommit shares transactions between concurrent deployment
	// updates, for databases with a single writer.
	GroupCommit bool
	// HashLabels: label sets are unique by md5(labels), not by the
	// labels themselves (index entries are bounded, labels are not).
	HashLabels bool
	// ArrayParams: the driver passes Go slices as SQL arrays, so bulk
	// inserts can be one INSERT ... SELECT FROM unnest(...).
	ArrayParams bool
	// JoinIDs is the aggregate that joins a group's device ids into one
	// value, one per line (group_concat, string_agg).
	JoinIDs string
	// LockMigrations serializes migrations across processes; nil if the
	// database does that itself.
	LockMigrations func(ctx context.Context, conn *sql.Conn) (unlock func(), err error)
}

// Store is a store.Store over database/sql.
type Store struct {
	db      *sql.DB // reads
	wdb     *sql.DB // writes; the same pool as db except on SQLite
	rd      querier // reads, through the statement cache where the dialect wants one
	stmts   *stmtCache
	wstmts  *stmtCache // prepared on the write pool, used inside transactions
	group   *groupCommit
	d       Dialect
	queries sync.Map // query text with '?' -> dialect text
	closers []func() error
	full    atomic.Bool
	sets    labelSetCache
	counts  countsCache
	// CountsMaxAge is how old the counts of a large rollout may be when
	// GetRollout returns them (DefaultCountsMaxAge when zero, always
	// fresh when negative); CountsCacheFrom is how many devices make a
	// rollout large (DefaultCountsCacheFrom when zero).
	CountsMaxAge    time.Duration
	CountsCacheFrom int
	// WriteWholeUpTo is how many devices a rollout may have and still have
	// every deployment written when it starts (DefaultWriteWholeUpTo when
	// zero); larger rollouts write their waves one by one.
	WriteWholeUpTo int
	// Observe, if set, receives every statement's latency by operation name.
	Observe func(op string, d time.Duration)
	// NotifyFinal, if set, gives a notice to send inside the transaction
	// that ends a deployment (UpdateDeployment to a terminal state): on
	// PostgreSQL a NOTIFY on channel, delivered if and only if the change
	// commits. Replicas use it so that a final state reaches the others
	// even when the replica that wrote it dies right after. It runs inside
	// the transaction and must not block.
	NotifyFinal func(d flotilla.Deployment) (channel, payload string)
}

var _ store.Store = (*Store)(nil)

// Config is what New needs.
type Config struct {
	Read, Write *sql.DB
	Dialect     Dialect
	Migrations  fs.FS // NNN_name.sql files
	// Closers run on Close after the pools are closed.
	Closers []func() error
}

// New migrates the database to the newest schema in cfg.Migrations and
// returns a Store. It fails if the database has a newer schema than this
// binary knows.
func New(ctx context.Context, cfg Config) (*Store, error) {
	s := newStore(cfg)
	if err := s.migrate(ctx, cfg.Migrations); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Open returns a Store without migrating; CheckSchema tells whether it is
// usable. Used by `flotilla migrate --status`.
func Open(cfg Config) *Store { return newStore(cfg) }

func newStore(cfg Config) *Store {
	s := &Store{db: cfg.Read, wdb: cfg.Write, d: cfg.Dialect, closers: cfg.Closers, rd: cfg.Read}
	if cfg.Dialect.CacheStatements {
		s.stmts = &stmtCache{db: cfg.Read}
		s.rd = s.stmts
		s.wstmts = &stmtCache{db: cfg.Write}
	}
	if cfg.Dialect.GroupCommit {
		s.group = newGroupCommit(s)
	}
	return s
}

// Close releases the pools.
func (s *Store) Close() error {
	var errs []error
	if s.stmts != nil {
		s.stmts.close()
		s.wstmts.close()
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	if s.wdb != nil && s.wdb != s.db {
		errs = append(errs, s.wdb.Close())
	}
	for _, c := range s.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// DB returns the write pool, for dialect packages that add features
// (LISTEN/NOTIFY) on the same connection settings.
func (s *Store) DB() *sql.DB { return s.wdb }

// q converts a query written with '?' placeholders to the dialect's form.
func (s *Store) q(query string) string {
	if !s.d.Numbered {
		return query
	}
	if v, ok := s.queries.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	out := b.String()
	s.queries.Store(query, out)
	return out
}

// querier is satisfied by *sql.DB, *Tx and *sql.Conn.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) observe(op string, start time.Time) {
	if s.Observe != nil {
		s.Observe(op, time.Since(start))
	}
}

// inTx runs fn in a write transaction, committing if it returns nil.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx *Tx) error) (err error) {
	defer s.observe(op, time.Now())
	stx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(op+": begin", err)
	}
	tx := &Tx{Tx: stx, stmts: s.wstmts}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return s.wrap(op+": commit", err)
	}
	s.full.Store(false)
	return nil
}

// exec runs one write statement outside an explicit transaction.
func (s *Store) exec(ctx context.Context, op, query string, args ...any) (int64, error) {
	defer s.observe(op, time.Now())
	res, err := s.wdb.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return 0, s.wrap(op, err)
	}
	s.full.Store(false)
	return res.RowsAffected()
}

// wrap turns driver errors into flotilla errors where they mean something to
// a caller, and adds context to the rest.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var fe *flotilla.Error
	if errors.As(err, &fe) {
		return err
	}
	if s.d.IsUniqueViolation != nil && s.d.IsUniqueViolation(err) {
		return flotilla.Errorf(flotilla.EConflict, "%s: already exists", op)
	}
	if s.isDiskFull(err) {
		s.full.Store(true)
		return flotilla.Errorf(flotilla.ENoSpace, "the database's disk is full: nothing was stored; free disk space on the server")
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (s *Store) isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || s.d.IsDiskFull != nil && s.d.IsDiskFull(err)
}

// Full reports whether the last write found the database's disk full,
// until a write succeeds again.
func (s *Store) Full() bool { return s.full.Load() }

// Probe makes a small write, so that a server whose disk was full learns
// when space came back without waiting for a client to try.
func (s *Store) Probe(ctx context.Context) error {
	return s.PutSetting(ctx, "probe", time.Now().UTC().Format(time.RFC3339Nano))
}

// Times are stored as Unix microseconds in a 64-bit integer column, which
// both databases sort and compare natively.
func ts(t time.Time) int64 { return t.UnixMicro() }

func tsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromTS(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullTS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromTS(v.Int64)
	return &t
}

func encodeMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func decodeMap(s string) map[string]string {
	m := map[string]string{}
	if s != "" && s != "{}" {
		_ = json.Unmarshal([]byte(s), &m)
	}
	return m
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func notFound(what string, args ...any) error {
	return flotilla.Errorf(flotilla.ENotFound, what, args...)
}

func nowMicro() int64 { return time.Now().UnixMicro() }
