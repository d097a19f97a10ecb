package sqlstore

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// chunk is how many ids go into one IN (...) list or rows into one
// multi-row INSERT; both databases handle it well.
const chunk = 500

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func int64Args(ids []int64) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// eachChunk calls fn with consecutive slices of at most chunk ids.
func eachChunk[T any](ids []T, fn func([]T) error) error {
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		if err := fn(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// bulkEvents appends the same history entry to many deployments.
func (s *Store) bulkEvents(ctx context.Context, q querier, ids []int64, at time.Time, state flotilla.DeploymentState, details []string, source string) error {
	det := "[]"
	if len(details) > 0 {
		b, _ := json.Marshal(details)
		det = string(b)
	}
	return eachChunk(ids, func(part []int64) error {
		var b strings.Builder
		args := make([]any, 0, len(part)*5)
		b.WriteString(`INSERT INTO deployment_events (deployment_id, at, state, details, source) VALUES `)
		for i, id := range part {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, ?, ?, ?)")
			args = append(args, id, ts(at), string(state), det, source)
		}
		_, err := q.ExecContext(ctx, s.q(b.String()), args...)
		return s.wrap("insert events", err)
	})
}

// queryColumn reads a one-column query's values.
func queryColumn[T any](ctx context.Context, q querier, query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
