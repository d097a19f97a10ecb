package sqlstore

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// stmtCache prepares read queries once and reuses them. Drivers that do not
// cache statements themselves (modernc's SQLite) otherwise parse every query
// on every call, which dominated the cost of a device's first poll.
type stmtCache struct {
	db        *sql.DB
	mu        sync.RWMutex
	m         map[string]*sql.Stmt
	preparing map[string]bool
}

// maxStmts bounds the cache; queries beyond it run unprepared. Queries with
// IN lists of several placeholders ("?,?") are never cached: each length is
// another text, and they would crowd out the few hot queries.
const maxStmts = 256

// cached returns the prepared statement if there is one.
func (c *stmtCache) cached(query string) *sql.Stmt {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[query]
}

func (c *stmtCache) stmt(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	if st := c.m[query]; st != nil || len(c.m) >= maxStmts || c.preparing[query] || strings.Contains(query, "?,?") {
		c.mu.Unlock()
		return st
	}
	if c.preparing == nil {
		c.preparing = map[string]bool{}
	}
	c.preparing[query] = true
	c.mu.Unlock()
	// Never prepare under the lock: on a one-connection pool the prepare
	// waits for whichever transaction holds the connection.
	st, err := c.db.PrepareContext(context.WithoutCancel(ctx), query)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.preparing, query)
	if err != nil {
		return nil // the plain query reports the error
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, query, args...)
}

func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.db.QueryRowContext(ctx, query, args...)
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.db.ExecContext(ctx, query, args...)
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// Tx is a write transaction whose statements come from the write pool's
// statement cache when there is one (database/sql rebinds a statement
// prepared on the pool to the transaction's connection, preparing it only
// once per connection).
type Tx struct {
	*sql.Tx
	stmts *stmtCache
}

func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *Tx) stmt(ctx context.Context, query string) *sql.Stmt {
	if t.stmts == nil {
		return nil
	}
	st := t.stmts.cached(query)
	if st == nil {
		// Preparing on the pool needs a connection, and this transaction
		// may hold the only one: prepare once it is free, run plain now.
		go t.stmts.stmt(context.Background(), query)
		return nil
	}
	return t.Tx.StmtContext(ctx, st)
}
