package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Bus carries messages between server replicas with LISTEN/NOTIFY, for
// cache invalidations and events. Payloads are at most 7900 bytes.
type Bus struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// MaxPayload is the largest payload Publish accepts (PostgreSQL's limit is
// 8000 bytes).
const MaxPayload = 7900

// NewBus returns a bus on the pool.
func NewBus(pool *pgxpool.Pool, log *slog.Logger) *Bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{pool: pool, log: log}
}

// Publish sends payload on channel to every listener, this process's too.
func (b *Bus) Publish(ctx context.Context, channel, payload string) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("notify %s: payload of %d bytes exceeds %d", channel, len(payload), MaxPayload)
	}
	_, err := b.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
	return err
}

// Subscribe calls fn for every payload on channel until ctx ends,
// reconnecting after errors. ready, if not nil, is closed once the first
// LISTEN is in place.
func (b *Bus) Subscribe(ctx context.Context, channel string, ready chan<- struct{}, fn func(payload string)) {
	first := true
	for ctx.Err() == nil {
		err := b.listen(ctx, channel, func() {
			if first && ready != nil {
				close(ready)
			}
			first = false
		}, fn)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("listen: reconnecting", "channel", channel, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (b *Bus) listen(ctx context.Context, channel string, listening func(), fn func(string)) error {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN "`+channel+`"`); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			conn.Conn().Close(context.Background())
			return err
		}
		fn(n.Payload)
	}
}
