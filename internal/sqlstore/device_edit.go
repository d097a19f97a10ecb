package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// errUnknownSet ends an edit whose labels' set has no id yet: the set is
// added on its own (labelSetIDs), outside the write, and the edit runs
// again.
var errUnknownSet = errors.New("label set not yet added")

// EditDevice implements store.Devices. The device is read locked (a
// concurrent patch of other fields must not be lost) and written in one
// small write, shared with others where the dialect groups commits.
func (s *Store) EditDevice(ctx context.Context, tenant, id string, now time.Time, edit func(flotilla.Device, bool) (*flotilla.DevicePatch, error)) (before, after flotilla.Device, err error) {
	known := map[string]int64{} // sets added for this edit
	for try := 0; ; try++ {
		var unknown string // labels whose set has no id
		err = s.write(ctx, "edit device", func(ctx context.Context, tx *Tx) error {
			var requested bool
			row := tx.QueryRowContext(ctx, s.q(`SELECT `+deviceCols+`, attrs_requested FROM devices WHERE tenant = ? AND id = ?`+s.d.ForUpdate), tenant, id)
			d, err := scanDevice(scanWith{row, &requested})
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("device %q not found", id)
			}
			if err != nil {
				return s.wrap("edit device", err)
			}
			before, after = d, d
			p, err := edit(d, requested)
			if err != nil || p == nil {
				return err
			}
			var set any // NULL: the labels are unchanged
			if p.Labels != nil {
				labels := encodeMap(*p.Labels)
				id, ok := known[labels]
				if !ok {
					id, ok = s.sets.get(tenant + "\x00" + labels)
				}
				if !ok {
					unknown = labels
					return errUnknownSet
				}
				set = id
			}
			after, err = s.patchDevice(ctx, tx, d, *p, set, now)
			return err
		})
		// Another edit may relabel the device meanwhile: a few tries.
		if !errors.Is(err, errUnknownSet) || try == 3 {
			if errors.Is(err, errUnknownSet) {
				err = flotilla.Errorf(flotilla.EConflict, "device %q is being relabeled: try again", id)
			}
			return before, after, err
		}
		ids, err := s.labelSetIDs(ctx, tenant, []string{unknown})
		if err != nil {
			return before, after, err
		}
		known[unknown] = ids[unknown]
	}
}

// scanWith scans a row's columns, then extra ones after them.
type scanWith struct {
	sc interface{ Scan(...any) error }
	// extra is where the columns after the scanner's own go.
	extra *bool
}

func (w scanWith) Scan(dest ...any) error { return w.sc.Scan(append(dest, w.extra)...) }
