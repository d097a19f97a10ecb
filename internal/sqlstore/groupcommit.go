package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// groupCommit runs concurrent deployment updates in shared transactions.
// SQLite has one writer: a fleet reporting progress queues on it, one
// transaction per report. Here one goroutine takes whatever updates are
// waiting, runs each under its own savepoint (a failing update rolls back
// alone) and commits them together.
type groupCommit struct {
	s    *Store
	reqs chan *updateReq
}

type updateReq struct {
	ctx              context.Context
	tenant, deviceID string
	id               int64
	fn               func(flotilla.Deployment) (flotilla.Change, error)
	out              flotilla.Deployment
	err              error
	done             chan struct{}
}

// maxGroup bounds one shared transaction.
const maxGroup = 256

func newGroupCommit(s *Store) *groupCommit {
	g := &groupCommit{s: s, reqs: make(chan *updateReq, maxGroup)}
	go g.run()
	return g
}

func (g *groupCommit) update(ctx context.Context, tenant, deviceID string, id int64, fn func(flotilla.Deployment) (flotilla.Change, error)) (flotilla.Deployment, error) {
	r := &updateReq{ctx: ctx, tenant: tenant, deviceID: deviceID, id: id, fn: fn, done: make(chan struct{})}
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return flotilla.Deployment{}, ctx.Err()
	}
	<-r.done // a batch is short; waiting for it keeps the answer consistent with the database
	return r.out, r.err
}

func (g *groupCommit) run() {
	for first := range g.reqs {
		batch := []*updateReq{first}
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

func (g *groupCommit) commit(batch []*updateReq) {
	s := g.s
	defer s.observe("update deployment (group)", time.Now())
	finish := func(err error) {
		for _, r := range batch {
			if err != nil && r.err == nil {
				r.err, r.out = err, flotilla.Deployment{}
			}
			close(r.done)
		}
	}
	ctx := context.Background()
	stx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		finish(s.wrap("update deployment: begin", err))
		return
	}
	tx := &Tx{Tx: stx, stmts: s.wstmts}
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT flotilla_update"); err != nil {
			stx.Rollback()
			finish(fmt.Errorf("update deployment: savepoint: %w", err))
			return
		}
		// Not the request's context: an interrupted statement would roll
		// back the whole shared transaction in SQLite.
		r.out, r.err = s.updateDeployment(ctx, tx, r.tenant, r.deviceID, r.id, r.fn)
		if r.err != nil {
			r.out = flotilla.Deployment{}
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO flotilla_update"); err != nil {
				stx.Rollback()
				finish(fmt.Errorf("update deployment: rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE flotilla_update"); err != nil {
			stx.Rollback()
			finish(fmt.Errorf("update deployment: release savepoint: %w", err))
			return
		}
	}
	if err := stx.Commit(); err != nil {
		finish(s.wrap("update deployment: commit", err))
		return
	}
	s.full.Store(false)
	finish(nil)
}
