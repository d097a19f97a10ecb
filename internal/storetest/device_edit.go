package storetest

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

func init() {
	extraTests["EditDeviceDecidesOnTheWrittenDevice"] = testEditDevice
}

// testEditDevice: EditDevice hands edit the device as stored and whether
// its attributes are requested, writes the patch edit returns (nothing for
// nil or an error), and keeps tenants apart.
func testEditDevice(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	d := device("acme", "k1", map[string]string{"site": "a"})
	d.Attributes = map[string]string{"os": "linux"}
	must(t, s.CreateDevice(ctx, d))
	must(t, s.CreateDevice(ctx, device("other", "k1", nil)))
	must(t, s.SetAttributesRequested(ctx, "acme", "k1", true))

	// nil: nothing is written.
	var saw flotilla.Device
	var sawRequested bool
	before, after, err := s.EditDevice(ctx, "acme", "k1", t0.Add(time.Hour), func(d flotilla.Device, requested bool) (*flotilla.DevicePatch, error) {
		saw, sawRequested = d, requested
		return nil, nil
	})
	must(t, err)
	if saw.Attributes["os"] != "linux" || saw.Labels["site"] != "a" || !sawRequested {
		t.Fatalf("edit saw %+v, requested %v", saw, sawRequested)
	}
	if !before.UpdatedAt.Equal(t0) || !after.UpdatedAt.Equal(t0) {
		t.Fatalf("a nil patch returned %v / %v, want the device as it was", before.UpdatedAt, after.UpdatedAt)
	}
	if got, _ := s.GetDevice(ctx, "acme", "k1"); !got.UpdatedAt.Equal(t0) {
		t.Fatalf("a nil patch wrote the device: updated %v", got.UpdatedAt)
	}

	// An error: nothing is written, the error comes back.
	boom := errors.New("boom")
	_, _, err = s.EditDevice(ctx, "acme", "k1", t0.Add(time.Hour), func(flotilla.Device, bool) (*flotilla.DevicePatch, error) {
		v := "9"
		return &flotilla.DevicePatch{Version: &v}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("EditDevice's error = %v, want edit's", err)
	}
	if got, _ := s.GetDevice(ctx, "acme", "k1"); got.Version == "9" {
		t.Fatal("a failed edit wrote its patch")
	}

	// A merge over what is stored, the request answered.
	before, after, err = s.EditDevice(ctx, "acme", "k1", t0.Add(time.Hour), func(d flotilla.Device, _ bool) (*flotilla.DevicePatch, error) {
		attrs := maps.Clone(d.Attributes)
		attrs["arch"] = "arm64"
		v, no := "2.0", false
		return &flotilla.DevicePatch{Attributes: &attrs, Version: &v, AttributesRequested: &no}, nil
	})
	must(t, err)
	if before.Attributes["arch"] != "" || after.Attributes["arch"] != "arm64" || after.Attributes["os"] != "linux" || after.Version != "2.0" ||
		!after.UpdatedAt.Equal(t0.Add(time.Hour)) || after.Labels["site"] != "a" {
		t.Fatalf("EditDevice = %+v -> %+v", before, after)
	}
	got, err := s.GetDevice(ctx, "acme", "k1")
	must(t, err)
	if !maps.Equal(got.Attributes, after.Attributes) || got.Version != "2.0" {
		t.Fatalf("stored %+v, want %+v", got, after)
	}
	if on, _ := s.AttributesRequested(ctx, "acme", "k1"); on {
		t.Fatal("the request was not answered")
	}
	_, _, err = s.EditDevice(ctx, "acme", "k1", t0, func(d flotilla.Device, requested bool) (*flotilla.DevicePatch, error) {
		sawRequested = requested
		return nil, nil
	})
	must(t, err)
	if sawRequested {
		t.Fatal("edit saw the answered request as still open")
	}

	// Tenants apart; an unknown device is not found and edit never runs.
	if o, _ := s.GetDevice(ctx, "other", "k1"); o.Version != "" || len(o.Attributes) != 0 {
		t.Fatalf("another tenant's device of the same id changed: %+v", o)
	}
	ran := false
	_, _, err = s.EditDevice(ctx, "acme", "nope", t0, func(flotilla.Device, bool) (*flotilla.DevicePatch, error) {
		ran = true
		return nil, nil
	})
	wantCode(t, err, flotilla.ENotFound)
	if ran {
		t.Fatal("edit ran for a device that does not exist")
	}
}
