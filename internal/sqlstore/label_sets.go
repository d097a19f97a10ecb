package sqlstore

// The label-set index (migration 014). Fleets repeat a few label sets over
// many devices, so a selector is decided once per distinct set, in Go —
// both databases then agree exactly on what it means — and the devices of
// the matching sets are read through devices_tenant_label_set. Every
// device row names its set (label_set): the store adds the set before it
// writes the device, and never removes one.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/label"
)

// maxLabelSets bounds the sets read to decide a selector: beyond it (labels
// nearly unique per device, a serial number as a label) deciding every set
// costs what reading the devices does, and the devices are read instead.
const maxLabelSets = 20_000

// labelSetCache remembers set ids by tenant and labels (JSON). Sets are
// never removed and their ids never change, so an entry never goes stale.
type labelSetCache struct {
	mu  sync.RWMutex
	ids map[string]int64
}

func (c *labelSetCache) get(key string) (int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.ids[key]
	return id, ok
}

func (c *labelSetCache) put(key string, id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[string]int64{}
	}
	if len(c.ids) < 100_000 {
		c.ids[key] = id
	}
}

// labelSetIDs returns the id of each of the tenant's label sets (labels as
// encodeMap writes them), adding those not yet known. It runs on its own,
// before the transaction that writes the devices: a set added for a write
// that then fails is carried by no device, and matches nothing.
func (s *Store) labelSetIDs(ctx context.Context, tenant string, sets []string) (map[string]int64, error) {
	out := make(map[string]int64, len(sets))
	var missing []string
	for _, ls := range sets {
		if id, ok := s.sets.get(tenant + "\x00" + ls); ok {
			out[ls] = id
		} else if !slices.Contains(missing, ls) {
			missing = append(missing, ls)
		}
	}
	// In one order everywhere: concurrent inserts wait for each other, never in a cycle.
	slices.Sort(missing)
	unique := "(tenant, labels)"
	key := func(p string) string { return p }
	if s.d.HashLabels {
		unique, key = "(tenant, md5(labels))", func(p string) string { return "md5(" + p + ")" }
	}
	for part := range slices.Chunk(missing, chunk/2) {
		args := make([]any, 0, 2*len(part))
		var values, keys []string
		for _, ls := range part {
			values = append(values, "(?, ?)")
			keys = append(keys, key("?"))
			args = append(args, tenant, ls)
		}
		if _, err := s.exec(ctx, "add label sets", `INSERT INTO label_sets (tenant, labels) VALUES `+strings.Join(values, ", ")+` ON CONFLICT `+unique+` DO NOTHING`, args...); err != nil {
			return nil, err
		}
		args = []any{tenant}
		for _, ls := range part {
			args = append(args, ls)
		}
		rows, err := s.wdb.QueryContext(ctx, s.q(`SELECT id, labels FROM label_sets WHERE tenant = ? AND `+key("labels")+` IN (`+strings.Join(keys, ", ")+`)`), args...)
		if err != nil {
			return nil, s.wrap("add label sets", err)
		}
		for rows.Next() {
			var id int64
			var ls string
			if err := rows.Scan(&id, &ls); err != nil {
				rows.Close()
				return nil, s.wrap("add label sets", err)
			}
			out[ls] = id
			s.sets.put(tenant+"\x00"+ls, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, s.wrap("add label sets", err)
		}
	}
	for _, ls := range sets {
		if _, ok := out[ls]; !ok {
			return nil, fmt.Errorf("add label sets: set %s of tenant %s was not added", ls, tenant)
		}
	}
	return out, nil
}

type labelSet struct {
	id     int64
	labels map[string]string
}

// setMatch says how a selector's devices are best found.
type setMatch int

const (
	scanDevices setMatch = iota // read every device and decide each
	allDevices                  // every set matches: every device does (the sets are all returned)
	inSets                      // the devices of the matching sets
)

// matchSets decides sel on each of the tenant's label sets.
func (s *Store) matchSets(ctx context.Context, tenant string, sel label.Selector) ([]labelSet, setMatch, error) {
	defer s.observe("match label sets", time.Now())
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT id, labels FROM label_sets WHERE tenant = ? LIMIT ?`), tenant, maxLabelSets+1)
	if err != nil {
		return nil, scanDevices, s.wrap("match label sets", err)
	}
	defer rows.Close()
	var out []labelSet
	n := 0
	for rows.Next() {
		var id int64
		var labels string
		if err := rows.Scan(&id, &labels); err != nil {
			return nil, scanDevices, s.wrap("match label sets", err)
		}
		n++
		if m := decodeMap(labels); sel.Matches(m) {
			out = append(out, labelSet{id: id, labels: m})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, scanDevices, s.wrap("match label sets", err)
	}
	switch {
	case n > maxLabelSets:
		return nil, scanDevices, nil
	case len(out) == n:
		return out, allDevices, nil
	}
	return out, inSets, nil
}

// countInSets counts the tenant's devices whose label set is one of sets.
func (s *Store) countInSets(ctx context.Context, tenant string, sets []labelSet) (int, error) {
	total := 0
	for part := range slices.Chunk(sets, chunk) {
		args := []any{tenant}
		for _, ls := range part {
			args = append(args, ls.id)
		}
		var n int
		err := s.rd.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM devices WHERE tenant = ? AND label_set IN (`+placeholders(len(part))+`)`), args...).Scan(&n)
		if err != nil {
			return 0, s.wrap("count devices", err)
		}
		total += n
	}
	return total, nil
}
