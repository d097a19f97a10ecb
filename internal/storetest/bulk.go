package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

func init() {
	extraTests["CreateDevices"] = testCreateDevices
}

// testCreateDevices: a bulk insert lands whole, across several statements,
// or not at all.
func testCreateDevices(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	var batch []flotilla.Device
	for i := 0; i < 1234; i++ {
		d := device("acme", fmt.Sprintf("bulk-%04d", i), map[string]string{"half": fmt.Sprint(i % 2)})
		d.Version = "1.0.0"
		batch = append(batch, d)
	}
	must(t, s.CreateDevices(ctx, batch))
	n, err := s.CountDevices(ctx, "acme", label.Selector{})
	must(t, err)
	odd, err := s.CountDevices(ctx, "acme", label.MustParse("half=1"))
	must(t, err)
	if n != 1234 || odd != 617 {
		t.Fatalf("after a bulk insert of 1234: %d devices, %d with half=1", n, odd)
	}
	got, err := s.GetDevice(ctx, "acme", "bulk-1233")
	must(t, err)
	if got.Version != "1.0.0" || got.Labels["half"] != "1" {
		t.Fatalf("GetDevice = %+v", got)
	}
	// A conflict in a later statement rolls back the earlier ones.
	var again []flotilla.Device
	for i := 0; i < 300; i++ {
		again = append(again, device("acme", fmt.Sprintf("new-%04d", i), nil))
	}
	again = append(again, device("acme", "bulk-0000", nil))
	wantCode(t, s.CreateDevices(ctx, again), flotilla.EConflict)
	if _, err := s.GetDevice(ctx, "acme", "new-0000"); !flotilla.IsCode(err, flotilla.ENotFound) {
		t.Fatalf("a failed bulk insert left new-0000 behind: %v", err)
	}
	must(t, s.CreateDevices(ctx, nil))
}
