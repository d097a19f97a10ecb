package sqlstore

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

// ListDevices implements store.Devices. Selectors are evaluated here rather
// than in SQL so that both dialects agree exactly on their meaning. With a
// selector, only ids, labels and sort keys are scanned — in growing keyset
// chunks until the page is full, each distinct label set decided once — and
// then the page's devices are read whole.
func (s *Store) ListDevices(ctx context.Context, tenant string, q store.DeviceQuery) ([]flotilla.Device, error) {
	defer s.observe("list devices", time.Now())
	if q.Selector.Empty() {
		return s.devicePage(ctx, tenant, q, q.Limit)
	}
	sets, how, err := s.matchSets(ctx, tenant, q.Selector)
	if err != nil {
		return nil, err
	}
	if how == allDevices {
		return s.devicePage(ctx, tenant, q, q.Limit)
	}
	var in []int64
	if how == inSets {
		if len(sets) == 0 {
			return nil, nil
		}
		if len(sets) <= chunk {
			for _, ls := range sets {
				in = append(in, ls.id)
			}
		}
	}
	ids, err := s.matchPage(ctx, tenant, q, in)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	byID := make(map[string]flotilla.Device, len(ids))
	for start := 0; start < len(ids); start += 500 {
		part := ids[start:min(start+500, len(ids))]
		args := []any{tenant}
		for _, id := range part {
			args = append(args, id)
		}
		rows, err := s.rd.QueryContext(ctx, s.q(`SELECT `+deviceCols+` FROM devices WHERE tenant = ? AND id IN (`+placeholders(len(part))+`)`), args...)
		if err != nil {
			return nil, s.wrap("list devices", err)
		}
		for rows.Next() {
			d, err := scanDevice(rows)
			if err != nil {
				rows.Close()
				return nil, s.wrap("list devices", err)
			}
			byID[d.ID] = d
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, s.wrap("list devices", err)
		}
	}
	out := make([]flotilla.Device, 0, len(ids))
	for _, id := range ids {
		if d, ok := byID[id]; ok { // gone since the scan: skipped
			out = append(out, d)
		}
	}
	return out, nil
}

// matchPage returns the ids, in q's order, of the page of devices that
// match q's selector. Devices whose label set is not in sets are skipped
// by the database when sets are given.
func (s *Store) matchPage(ctx context.Context, tenant string, q store.DeviceQuery, sets []int64) ([]string, error) {
	chunk := 1000
	var ids []string
	decided := map[string]bool{}
	for {
		filter := labelPrefilter(q.Selector)
		if sets != nil {
			filter = nil
		}
		query, args := deviceOrder(`id, labels, COALESCE(last_seen_at, 0), version`, tenant, q, chunk, filter, sets)
		rows, err := s.rd.QueryContext(ctx, s.q(query), args...)
		if err != nil {
			return nil, s.wrap("list devices", err)
		}
		n := 0
		var id, labels, version string
		var seen int64
		for rows.Next() {
			if err := rows.Scan(&id, &labels, &seen, &version); err != nil {
				rows.Close()
				return nil, s.wrap("list devices", err)
			}
			n++
			match, ok := decided[labels]
			if !ok {
				match = q.Selector.Matches(decodeMap(labels))
				if len(decided) < 100_000 {
					decided[labels] = match
				}
			}
			if match {
				ids = append(ids, id)
				if q.Limit > 0 && len(ids) == q.Limit {
					break
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, s.wrap("list devices", err)
		}
		if n < chunk || (q.Limit > 0 && len(ids) == q.Limit) {
			return ids, nil
		}
		q.AfterID = id
		switch q.Sort {
		case store.SortByLastSeen:
			q.AfterValue = strconv.FormatInt(seen, 10)
		case store.SortByVersion:
			q.AfterValue = version
		}
		chunk = min(4*chunk, 64000)
	}
}

// likeCond is a disjunction of LIKE patterns on the labels column.
type likeCond []string

// labelPrefilter turns the selector's positive requirements (key=value,
// key in (...), key) into LIKE patterns on the stored JSON that every
// matching device's labels satisfy, so that the database skips most of the
// others. It only narrows: the selector itself still decides, in Go.
func labelPrefilter(sel label.Selector) []likeCond {
	var out []likeCond
	for _, r := range sel.Reqs {
		key := jsonString(r.Key)
		switch {
		case r.Op == label.Equals || (r.Op == label.In && len(r.Values) <= 8):
			var c likeCond
			for _, v := range r.Values {
				c = append(c, "%"+likeEscape(key+":"+jsonString(v))+"%")
			}
			if len(c) > 0 {
				out = append(out, c)
			}
		case r.Op == label.Exists:
			out = append(out, likeCond{"%" + likeEscape(key+":") + "%"})
		}
	}
	return out
}

// jsonString is s as encodeMap writes it.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// devicePage reads up to limit devices (0: all) in q's order after q's
// cursor, without the selector.
func (s *Store) devicePage(ctx context.Context, tenant string, q store.DeviceQuery, limit int) ([]flotilla.Device, error) {
	query, args := deviceOrder(deviceCols, tenant, q, limit, nil, nil)
	rows, err := s.rd.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap("list devices", err)
	}
	defer rows.Close()
	var out []flotilla.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, s.wrap("list devices", err)
		}
		out = append(out, d)
	}
	return out, s.wrap("list devices", rows.Err())
}

// deviceOrder is the query for cols of up to limit (0: all) of the
// tenant's devices in q's order after q's cursor, ignoring the selector
// but for the conditions in filter and the label sets in sets.
func deviceOrder(cols, tenant string, q store.DeviceQuery, limit int, filter []likeCond, sets []int64) (string, []any) {
	where, args := `tenant = ?`, []any{tenant}
	if len(sets) > 0 {
		where += ` AND label_set IN (` + placeholders(len(sets)) + `)`
		args = append(args, int64Args(sets)...)
	}
	for _, f := range filter {
		where += ` AND (` + strings.TrimSuffix(strings.Repeat(`labels LIKE ? ESCAPE '\' OR `, len(f)), ` OR `) + `)`
		for _, p := range f {
			args = append(args, p)
		}
	}
	if q.Prefix != "" {
		// id >= prefix AND id < prefix+U+FFFF: a range on the key, not a scan.
		where += ` AND id >= ? AND id < ?`
		args = append(args, q.Prefix, q.Prefix+"\uffff")
	}
	dir, cmp := "", ">"
	if q.Desc {
		dir, cmp = " DESC", "<"
	}
	var order string
	switch q.Sort {
	case store.SortByLastSeen:
		order = `COALESCE(last_seen_at, 0)` + dir + `, id` + dir
		if q.AfterID != "" {
			v, _ := strconv.ParseInt(q.AfterValue, 10, 64)
			where += ` AND (COALESCE(last_seen_at, 0), id) ` + cmp + ` (?, ?)`
			args = append(args, v, q.AfterID)
		}
	case store.SortByVersion:
		order = `version` + dir + `, id` + dir
		if q.AfterID != "" {
			where += ` AND (version, id) ` + cmp + ` (?, ?)`
			args = append(args, q.AfterValue, q.AfterID)
		}
	default:
		order = `id` + dir
		if q.AfterID != "" {
			where += ` AND id ` + cmp + ` ?`
			args = append(args, q.AfterID)
		}
	}
	query := `SELECT ` + cols + ` FROM devices WHERE ` + where + ` ORDER BY ` + order
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	return query, args
}
