package sqlstore

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// deviceRow rides along with a device's deployments as a row of their
// shape, id 0 (no deployment has it), carrying attrs_requested in
// device_events and the token hash in message: the poll's flag and the
// device's credential without a statement of their own.
const deviceRow = `UNION ALL SELECT 0, tenant, id, NULL, '', '', NULL, 0, 0, '', NULL, NULL, '', NULL, '', '', 0, 0, NULL, COALESCE(token_hash, ''),
	0, 0, NULL, NULL, NULL, attrs_requested FROM devices WHERE tenant = ? AND id = ?`

// DevicePoll implements store.Deployments.
func (s *Store) DevicePoll(ctx context.Context, tenant, deviceID string) (store.DevicePoll, error) {
	defer s.observe("device poll", time.Now())
	return s.devicePoll(ctx, tenant, deviceID, deviceRow)
}

// devicePoll reads, in one statement, the device's open deployments
// (deployments_open), the newest that succeeded and, when withDevice is
// deviceRow, its attributes flag.
func (s *Store) devicePoll(ctx context.Context, tenant, deviceID string, withDevice string) (store.DevicePoll, error) {
	args := []any{tenant, deviceID, tenant, deviceID}
	if withDevice != "" {
		args = append(args, tenant, deviceID)
	}
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT `+deploymentCols+` FROM deployments WHERE tenant = ? AND device_id = ? AND state IN `+openStates+`
		UNION ALL SELECT * FROM (SELECT `+deploymentCols+` FROM deployments WHERE tenant = ? AND device_id = ? AND state = 'succeeded' ORDER BY id DESC LIMIT 1) AS installed `+
		withDevice), args...)
	if err != nil {
		return store.DevicePoll{}, s.wrap("device actions", err)
	}
	defer rows.Close()
	var p store.DevicePoll
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return store.DevicePoll{}, s.wrap("device actions", err)
		}
		switch {
		case d.ID == 0:
			p.AttributesRequested = d.DeviceEvents != 0
			p.Registered, p.TokenHash = true, d.Message
		case d.State == flotilla.StateSucceeded:
			p.Installed = &d
		default:
			p.Open = append(p.Open, d)
		}
	}
	if err := rows.Err(); err != nil {
		return store.DevicePoll{}, s.wrap("device actions", err)
	}
	slices.SortFunc(p.Open, func(a, b flotilla.Deployment) int { return cmp.Compare(a.ID, b.ID) })
	return p, nil
}
