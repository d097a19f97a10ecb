package sqlstore

import (
	"context"
	"runtime"
	"slices"
	"strings"

	"github.com/flotilla-ota/flotilla/rollout"
	"golang.org/x/sync/errgroup"
)

// membersInSets returns the tenant's devices whose label set is one of
// sets, with their labels, in id order. Each set's ids come from
// devices_tenant_label_set alone, joined into one value by the database
// (a row per device through database/sql costs more than the index read),
// the sets split among a few readers, each of which merges its sets'
// sorted runs before the readers' runs are merged.
func (s *Store) membersInSets(ctx context.Context, tenant string, sets []labelSet) ([]rollout.Member, error) {
	query := s.q(`SELECT COUNT(*), COALESCE(` + s.d.JoinIDs + `, '') FROM devices WHERE tenant = ? AND label_set = ?`)
	workers := min(runtime.GOMAXPROCS(0), 4, len(sets))
	merged := make([][]rollout.Member, workers)
	g, ctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error {
			var runs [][]rollout.Member
			for i := w; i < len(sets); i += workers {
				var n int
				var joined string
				if err := s.rd.QueryRowContext(ctx, query, tenant, sets[i].id).Scan(&n, &joined); err != nil {
					return s.wrap("devices in label sets", err)
				}
				ids := strings.Split(joined, "\n")
				if n == 0 {
					ids = nil
				} else if len(ids) != n {
					// An id with a line break (never written through the
					// core, which validates ids): read them one by one.
					var err error
					if ids, err = s.idsInSet(ctx, tenant, sets[i].id); err != nil {
						return err
					}
				}
				if !slices.IsSorted(ids) {
					slices.Sort(ids)
				}
				run := make([]rollout.Member, len(ids))
				for j, id := range ids {
					run[j] = rollout.Member{ID: id, Labels: sets[i].labels}
				}
				runs = append(runs, run)
			}
			merged[w] = mergeRuns(runs)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return mergeRuns(merged), nil
}

// idsInSet reads the ids of one label set's devices, a row each.
func (s *Store) idsInSet(ctx context.Context, tenant string, set int64) ([]string, error) {
	ids, err := queryColumn[string](ctx, s.rd, s.q(`SELECT id FROM devices WHERE tenant = ? AND label_set = ?`), tenant, set)
	return ids, s.wrap("devices in label sets", err)
}

// mergeRuns merges runs sorted by id into one slice sorted by id, pair by
// pair: about n·log2(len(runs)) comparisons, where sorting all n members
// would take n·log2(n).
func mergeRuns(runs [][]rollout.Member) []rollout.Member {
	runs = slices.DeleteFunc(runs, func(r []rollout.Member) bool { return len(r) == 0 })
	switch len(runs) {
	case 0:
		return nil
	case 1:
		return runs[0]
	}
	total := 0
	for _, r := range runs {
		total += len(r)
	}
	// Two buffers, taking turns as source and destination.
	src, dst := make([]rollout.Member, 0, total), make([]rollout.Member, total)
	bounds := []int{0}
	for _, r := range runs {
		src = append(src, r...)
		bounds = append(bounds, len(src))
	}
	for len(bounds) > 2 {
		next := []int{0}
		for k := 0; k+1 < len(bounds); k += 2 {
			if k+2 >= len(bounds) { // an odd run out: copied as it is
				copy(dst[bounds[k]:], src[bounds[k]:bounds[k+1]])
				next = append(next, bounds[k+1])
				continue
			}
			merge2(dst[bounds[k]:bounds[k+2]], src[bounds[k]:bounds[k+1]], src[bounds[k+1]:bounds[k+2]])
			next = append(next, bounds[k+2])
		}
		src, dst, bounds = dst, src, next
	}
	return src
}

// merge2 merges a and b, each sorted by id, into out (len(a)+len(b)).
func merge2(out, a, b []rollout.Member) {
	i, j, k := 0, 0, 0
	for i < len(a) && j < len(b) {
		if b[j].ID < a[i].ID {
			out[k] = b[j]
			j++
		} else {
			out[k] = a[i]
			i++
		}
		k++
	}
	k += copy(out[k:], a[i:])
	copy(out[k:], b[j:])
}
