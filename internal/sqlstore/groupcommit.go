package sqlstore

import (
	"context"
	"fmt"
	"time"
)

// groupCommit runs concurrent small writes in shared transactions. SQLite
// has one writer: a fleet reporting progress, uploading its attributes or
// registering itself queues on it, one transaction per request, and under
// load each hand-over of the write connection waits for a goroutine the
// scheduler has to find among thousands. Here one goroutine takes whatever
// writes are waiting, runs each under its own savepoint (a failing write
// rolls back alone) and commits them together.
type groupCommit struct {
	s    *Store
	reqs chan *writeReq
}

type writeReq struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *Tx) error
	err  error
	done chan struct{}
}

// maxGroup bounds one shared transaction.
const maxGroup = 256

func newGroupCommit(s *Store) *groupCommit {
	g := &groupCommit{s: s, reqs: make(chan *writeReq, maxGroup)}
	go g.run()
	return g
}

// do runs fn in the next shared transaction and returns once that is
// committed (fn's error, or the commit's).
func (g *groupCommit) do(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan struct{})}
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-r.done // a batch is short; waiting for it keeps the answer consistent with the database
	return r.err
}

func (g *groupCommit) run() {
	for first := range g.reqs {
		batch := []*writeReq{first}
	fill:
		for len(batch) < maxGroup {
			select {
			case r, ok := <-g.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		g.commit(batch)
	}
}

func (g *groupCommit) commit(batch []*writeReq) {
	s := g.s
	defer s.observe("group commit", time.Now())
	finish := func(err error) {
		for _, r := range batch {
			if err != nil && r.err == nil {
				r.err = err
			}
			close(r.done)
		}
	}
	ctx := context.Background()
	stx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		finish(s.wrap("group commit: begin", err))
		return
	}
	tx := &Tx{Tx: stx, stmts: s.wstmts}
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT flotilla_write"); err != nil {
			stx.Rollback()
			finish(fmt.Errorf("group commit: savepoint: %w", err))
			return
		}
		// Not the request's context: an interrupted statement would roll
		// back the whole shared transaction in SQLite.
		if r.err = r.fn(ctx, tx); r.err != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO flotilla_write"); err != nil {
				stx.Rollback()
				finish(fmt.Errorf("group commit: rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE flotilla_write"); err != nil {
			stx.Rollback()
			finish(fmt.Errorf("group commit: release savepoint: %w", err))
			return
		}
	}
	if err := stx.Commit(); err != nil {
		finish(s.wrap("group commit: commit", err))
		return
	}
	s.full.Store(false)
	finish(nil)
}

// write runs fn as one small transaction: in the next shared one where the
// dialect groups commits, else in its own. fn gets the context its
// statements must use.
func (s *Store) write(ctx context.Context, op string, fn func(ctx context.Context, tx *Tx) error) error {
	if s.group != nil {
		defer s.observe(op, time.Now())
		return s.group.do(ctx, fn)
	}
	return s.inTx(ctx, op, func(tx *Tx) error { return fn(ctx, tx) })
}
