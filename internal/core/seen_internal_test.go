package core

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/store"
)

// touchRecorder is a store that records the last_seen writes.
type touchRecorder struct {
	store.Store
	flushes [][]store.DeviceSeen
}

func (r *touchRecorder) TouchDevices(_ context.Context, list []store.DeviceSeen, _ time.Time) ([]store.DeviceSeen, error) {
	r.flushes = append(r.flushes, list)
	return nil, nil
}

// TestSeenWritesSpreadOut: a fleet that came online in the same second and
// polls in step has its last_seen rows rewritten spread over the flushes,
// not all of them in one flush every resolution; and no device's stored
// value gets staler than the resolution.
func TestSeenWritesSpreadOut(t *testing.T) {
	rec := &touchRecorder{}
	c := New(rec, nil, nil, nil, Config{OfflineAfter: 10 * time.Minute})
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	c.Now = func() time.Time { return now }
	const devices = 1000
	res := c.seenResolution()
	written := map[string]time.Time{}
	for step := range 20 * 60 {
		for i := range devices {
			c.MarkSeen("acme", fmt.Sprintf("d%04d", i))
		}
		if err := c.FlushSeen(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, d := range rec.flushes[len(rec.flushes)-1] {
			if last, ok := written[d.ID]; ok && d.At.Sub(last) > res {
				t.Fatalf("step %d: %s rewritten %v after its last write, past the %v resolution", step, d.ID, d.At.Sub(last), res)
			}
			written[d.ID] = d.At
		}
		now = now.Add(time.Second)
	}
	if len(rec.flushes[0]) != devices {
		t.Fatalf("first flush wrote %d devices, want all %d", len(rec.flushes[0]), devices)
	}
	most := 0
	for _, f := range rec.flushes[len(rec.flushes)-5*60:] {
		most = max(most, len(f))
	}
	// In step, every write would land in one flush a minute: 1000 rows.
	if most > devices/10 {
		t.Fatalf("after 15 minutes a flush still wrote %d of %d devices at once", most, devices)
	}
	t.Logf("largest flush in the last 5 minutes: %d of %d devices", most, devices)
}
