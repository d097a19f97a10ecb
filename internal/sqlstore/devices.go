package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

const deviceCols = `tenant, id, labels, attributes, version, address, token_hash, token, node_token, last_seen_at, created_at, updated_at, name, description, dmf_exchange, dmf_link`

func scanDevice(sc interface{ Scan(...any) error }) (flotilla.Device, error) {
	var d flotilla.Device
	var labels, attrs string
	var tokenHash, token, nodeToken, dmfExchange sql.NullString
	var lastSeen sql.NullInt64
	var created, updated int64
	err := sc.Scan(&d.Tenant, &d.ID, &labels, &attrs, &d.Version, &d.Address, &tokenHash, &token, &nodeToken, &lastSeen, &created, &updated, &d.Name, &d.Description, &dmfExchange, &d.DMFLink)
	d.DMFExchange = dmfExchange.String
	d.Labels = decodeMap(labels)
	d.Attributes = decodeMap(attrs)
	d.TokenHash, d.TokenSealed, d.NodeTokenSealed = tokenHash.String, token.String, nodeToken.String
	d.LastSeenAt = fromNullTS(lastSeen)
	d.CreatedAt, d.UpdatedAt = fromTS(created), fromTS(updated)
	return d, err
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// CreateDevice implements store.Devices.
func (s *Store) CreateDevice(ctx context.Context, d flotilla.Device) error {
	labels := encodeMap(d.Labels)
	set, err := s.labelSetIDs(ctx, d.Tenant, []string{labels})
	if err != nil {
		return err
	}
	// One of many when a fleet registers itself: a shared transaction.
	err = s.write(ctx, "create device", func(ctx context.Context, tx *Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO devices (`+deviceCols+`, label_set) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			d.Tenant, d.ID, labels, encodeMap(d.Attributes), d.Version, d.Address,
			nullString(d.TokenHash), nullString(d.TokenSealed), nullString(d.NodeTokenSealed), tsPtr(d.LastSeenAt), ts(d.CreatedAt), ts(d.UpdatedAt), d.Name, d.Description,
			nullString(d.DMFExchange), d.DMFLink, set[labels])
		return s.wrap("create device", err)
	})
	if flotilla.IsCode(err, flotilla.EConflict) {
		return flotilla.Errorf(flotilla.EConflict, "device %q already exists", d.ID)
	}
	return err
}

// CreateDevices implements store.Devices with multi-row INSERTs.
func (s *Store) CreateDevices(ctx context.Context, ds []flotilla.Device) error {
	const per = 17
	rowsPer := chunk / 5 // stay under both databases' parameter limits
	labels := make([]string, len(ds))
	byTenant := map[string][]string{}
	for i, d := range ds {
		labels[i] = encodeMap(d.Labels)
		byTenant[d.Tenant] = append(byTenant[d.Tenant], labels[i])
	}
	sets := map[string]map[string]int64{}
	for tenant, ls := range byTenant {
		slices.Sort(ls)
		ids, err := s.labelSetIDs(ctx, tenant, slices.Compact(ls))
		if err != nil {
			return err
		}
		sets[tenant] = ids
	}
	return s.inTx(ctx, "create devices", func(tx *Tx) error {
		for len(ds) > 0 {
			n := min(len(ds), rowsPer)
			var b strings.Builder
			b.WriteString(`INSERT INTO devices (` + deviceCols + `, label_set) VALUES `)
			args := make([]any, 0, n*per)
			for i, d := range ds[:n] {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString("(" + placeholders(per) + ")")
				args = append(args, d.Tenant, d.ID, labels[i], encodeMap(d.Attributes), d.Version, d.Address,
					nullString(d.TokenHash), nullString(d.TokenSealed), nullString(d.NodeTokenSealed), tsPtr(d.LastSeenAt), ts(d.CreatedAt), ts(d.UpdatedAt), d.Name, d.Description,
					nullString(d.DMFExchange), d.DMFLink, sets[d.Tenant][labels[i]])
			}
			if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
				if err = s.wrap("create devices", err); flotilla.IsCode(err, flotilla.EConflict) {
					return flotilla.Errorf(flotilla.EConflict, "a device among %s…%s already exists", ds[0].ID, ds[n-1].ID)
				}
				return err
			}
			ds, labels = ds[n:], labels[n:]
		}
		return nil
	})
}

// GetDevice implements store.Devices.
func (s *Store) GetDevice(ctx context.Context, tenant, id string) (flotilla.Device, error) {
	defer s.observe("get device", time.Now())
	return s.getDevice(ctx, s.rd, tenant, id)
}

// DeviceTokenHash implements store.Devices.
func (s *Store) DeviceTokenHash(ctx context.Context, tenant, id string) (string, error) {
	defer s.observe("device token", time.Now())
	var hash sql.NullString
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT token_hash FROM devices WHERE tenant = ? AND id = ?`), tenant, id).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("device %q not found", id)
	}
	return hash.String, s.wrap("device token", err)
}

// DeviceByTokenHash implements store.Devices.
func (s *Store) DeviceByTokenHash(ctx context.Context, hash string) (flotilla.Device, error) {
	defer s.observe("device by token", time.Now())
	d, err := scanDevice(s.rd.QueryRowContext(ctx, s.q(`SELECT `+deviceCols+` FROM devices WHERE token_hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("no device has this token")
	}
	return d, s.wrap("device by token", err)
}

func (s *Store) getDevice(ctx context.Context, q querier, tenant, id string) (flotilla.Device, error) {
	d, err := scanDevice(q.QueryRowContext(ctx, s.q(`SELECT `+deviceCols+` FROM devices WHERE tenant = ? AND id = ?`), tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("device %q not found", id)
	}
	return d, s.wrap("get device", err)
}

// LatestDeployments implements store.Devices.
func (s *Store) LatestDeployments(ctx context.Context, tenant string, deviceIDs []string) (map[string]flotilla.Deployment, error) {
	defer s.observe("latest deployments", time.Now())
	out := map[string]flotilla.Deployment{}
	for start := 0; start < len(deviceIDs); start += 500 {
		part := deviceIDs[start:min(start+500, len(deviceIDs))]
		args := []any{tenant}
		for _, id := range part {
			args = append(args, id)
		}
		rows, err := s.rd.QueryContext(ctx, s.q(`SELECT `+deploymentCols+` FROM deployments WHERE id IN (
			SELECT MAX(id) FROM deployments WHERE tenant = ? AND device_id IN (`+placeholders(len(part))+`) GROUP BY device_id)`), args...)
		if err != nil {
			return nil, s.wrap("latest deployments", err)
		}
		for rows.Next() {
			d, err := scanDeployment(rows)
			if err != nil {
				rows.Close()
				return nil, s.wrap("latest deployments", err)
			}
			out[d.DeviceID] = d
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, s.wrap("latest deployments", err)
		}
	}
	return out, nil
}

// CountDevices implements store.Devices.
func (s *Store) CountDevices(ctx context.Context, tenant string, sel label.Selector) (int, error) {
	defer s.observe("count devices", time.Now())
	if sel.Empty() {
		var n int
		err := s.rd.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM devices WHERE tenant = ?`), tenant).Scan(&n)
		return n, s.wrap("count devices", err)
	}
	sets, how, err := s.matchSets(ctx, tenant, sel)
	switch {
	case err != nil:
		return 0, err
	case how == inSets:
		return s.countInSets(ctx, tenant, sets)
	case how == allDevices:
		return s.CountDevices(ctx, tenant, label.Everything)
	}
	ids, err := s.matchDeviceIDs(ctx, s.rd, tenant, sel)
	return len(ids), err
}

// matchDeviceIDs returns the ids of the tenant's devices matching sel, in id
// order, reading only the columns needed.
func (s *Store) matchDeviceIDs(ctx context.Context, q querier, tenant string, sel label.Selector) ([]string, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT id, labels FROM devices WHERE tenant = ? ORDER BY id`), tenant)
	if err != nil {
		return nil, s.wrap("match devices", err)
	}
	defer rows.Close()
	var ids []string
	// Fleets repeat the same few label sets: decide each distinct set once.
	seen := map[string]bool{}
	for rows.Next() {
		var id, labels string
		if err := rows.Scan(&id, &labels); err != nil {
			return nil, s.wrap("match devices", err)
		}
		match, ok := seen[labels]
		if !ok {
			match = sel.Empty() || sel.Matches(decodeMap(labels))
			if len(seen) < 100_000 {
				seen[labels] = match
			}
		}
		if match {
			ids = append(ids, id)
		}
	}
	return ids, s.wrap("match devices", rows.Err())
}

// UpdateDevice implements store.Devices: an edit whose patch does not
// depend on the device.
func (s *Store) UpdateDevice(ctx context.Context, tenant, id string, p flotilla.DevicePatch, now time.Time) (flotilla.Device, error) {
	_, d, err := s.EditDevice(ctx, tenant, id, now, func(flotilla.Device, bool) (*flotilla.DevicePatch, error) { return &p, nil })
	return d, err
}

// patchDevice writes p over d, read in tx, with the labels' set (nil when
// p leaves them) and returns the result.
func (s *Store) patchDevice(ctx context.Context, tx *Tx, d flotilla.Device, p flotilla.DevicePatch, labelSet any, now time.Time) (flotilla.Device, error) {
	old := d
	p.Apply(&d)
	d.UpdatedAt = now
	var set setList
	labels := encodeMap(d.Labels)
	set.set("labels", labels)
	set.set("attributes", encodeMap(d.Attributes))
	set.set("address", d.Address)
	set.set("token", nullString(d.TokenSealed))
	set.set("node_token", nullString(d.NodeTokenSealed))
	set.set("updated_at", ts(now))
	set.set("name", d.Name)
	set.set("description", d.Description)
	if p.AttributesRequested != nil {
		set.set("attrs_requested", boolInt(*p.AttributesRequested))
	}
	set.changed("version", old.Version, d.Version)
	set.changed("token_hash", nullString(old.TokenHash), nullString(d.TokenHash))
	if labelSet != nil && labels != encodeMap(old.Labels) {
		set.set("label_set", labelSet)
	}
	_, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET `+set.String()+` WHERE tenant = ? AND id = ?`), append(set.args, d.Tenant, d.ID)...)
	return d, s.wrap("update device", err)
}

// DeleteDevice implements store.Devices. Deployments and their history go
// with the device (ON DELETE CASCADE).
func (s *Store) DeleteDevice(ctx context.Context, tenant, id string) error {
	return s.inTx(ctx, "delete device", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM devices WHERE tenant = ? AND id = ?`), tenant, id)
		if err != nil {
			return s.wrap("delete device", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("device %q not found", id)
		}
		return nil
	})
}

// TouchDevices implements store.Devices.
func (s *Store) TouchDevices(ctx context.Context, seen []store.DeviceSeen, offlineBefore time.Time) ([]store.DeviceSeen, error) {
	if len(seen) == 0 {
		return nil, nil
	}
	// In key order: consecutive rows share pages, which a batch in the
	// order devices happened to poll would seek all over the table for.
	seen = slices.Clone(seen)
	slices.SortFunc(seen, func(a, b store.DeviceSeen) int {
		return cmp.Or(strings.Compare(a.Tenant, b.Tenant), strings.Compare(a.ID, b.ID))
	})
	var online []store.DeviceSeen
	err := s.inTx(ctx, "touch devices", func(tx *Tx) error {
		online = nil
		upd, err := tx.PrepareContext(ctx, s.q(`UPDATE devices SET last_seen_at = ? WHERE tenant = ? AND id = ? AND (last_seen_at IS NULL OR last_seen_at < ?)`))
		if err != nil {
			return s.wrap("touch devices", err)
		}
		defer upd.Close()
		for _, d := range seen {
			at := ts(d.At)
			if d.Check {
				// Written only if it was offline: then it came online.
				res, err := upd.ExecContext(ctx, at, d.Tenant, d.ID, ts(offlineBefore))
				if err != nil {
					return s.wrap("touch devices", err)
				}
				if n, _ := res.RowsAffected(); n > 0 {
					online = append(online, d)
					continue
				}
			}
			if _, err := upd.ExecContext(ctx, at, d.Tenant, d.ID, at); err != nil {
				return s.wrap("touch devices", err)
			}
		}
		return nil
	})
	return online, err
}

// DevicesLastSeenBetween implements store.Devices. It reads tenant by
// tenant through devices_tenant_seen (migration 020), whose key is
// COALESCE(last_seen_at, 0): a device never seen is not gone.
func (s *Store) DevicesLastSeenBetween(ctx context.Context, from, to time.Time) ([]store.DeviceSeen, error) {
	tenants, err := s.ListTenants(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.DeviceSeen
	for _, t := range tenants {
		tenant := t.Name
		rows, err := s.rd.QueryContext(ctx, s.q(`SELECT id, last_seen_at FROM devices
			WHERE tenant = ? AND COALESCE(last_seen_at, 0) >= ? AND COALESCE(last_seen_at, 0) < ? AND last_seen_at IS NOT NULL`), tenant, ts(from), ts(to))
		if err != nil {
			return nil, s.wrap("devices last seen", err)
		}
		for rows.Next() {
			d := store.DeviceSeen{Tenant: tenant}
			var at int64
			if err := rows.Scan(&d.ID, &at); err != nil {
				rows.Close()
				return nil, s.wrap("devices last seen", err)
			}
			d.At = fromTS(at)
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, s.wrap("devices last seen", err)
		}
	}
	return out, nil
}

// FleetSummary implements store.Devices.
func (s *Store) FleetSummary(ctx context.Context, tenant string, onlineSince time.Time) (flotilla.FleetSummary, error) {
	defer s.observe("fleet summary", time.Now())
	sum := flotilla.FleetSummary{Versions: map[string]int{}}
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_seen_at >= ? THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN last_seen_at IS NULL THEN 1 ELSE 0 END), 0) FROM devices WHERE tenant = ?`), ts(onlineSince), tenant).
		Scan(&sum.Total, &sum.Online, &sum.Never)
	if err != nil {
		return sum, s.wrap("fleet summary", err)
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT version, COUNT(*) FROM devices WHERE tenant = ? GROUP BY version`), tenant)
	if err != nil {
		return sum, s.wrap("fleet summary", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		var n int
		if err := rows.Scan(&v, &n); err != nil {
			return sum, s.wrap("fleet summary", err)
		}
		if v == "" {
			v = "unknown"
		}
		sum.Versions[v] += n
	}
	return sum, s.wrap("fleet summary", rows.Err())
}
