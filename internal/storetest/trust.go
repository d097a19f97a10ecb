package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

func init() { extraTests["Trust"] = testTrust }

func testTrust(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "beta")
	if keys, err := s.TrustKeys(ctx, "acme"); err != nil || len(keys) != 0 {
		t.Fatalf("keys before first use = %v, %v", keys, err)
	}
	keys := []store.TrustKey{
		{Tenant: "acme", Role: "snapshot", KeyID: "k1", Public: `{"a":1}`, PrivateSealed: "sealed1", CreatedAt: t0},
		{Tenant: "acme", Role: "timestamp", KeyID: "k2", Public: `{"a":2}`, PrivateSealed: "sealed2", CreatedAt: t0},
	}
	must(t, s.AddTrustKeys(ctx, keys))
	// A second writer (another replica) loses, and nothing of its is kept.
	err := s.AddTrustKeys(ctx, []store.TrustKey{{Tenant: "beta", Role: "snapshot", KeyID: "x", CreatedAt: t0}, {Tenant: "acme", Role: "timestamp", KeyID: "k3", CreatedAt: t0}})
	wantCode(t, err, flotilla.EConflict)
	got, err := s.TrustKeys(ctx, "acme")
	must(t, err)
	if len(got) != 2 || got[1].KeyID != "k2" || got[1].PrivateSealed != "sealed2" || !got[0].CreatedAt.Equal(t0) {
		t.Fatalf("keys = %+v", got)
	}
	if other, _ := s.TrustKeys(ctx, "beta"); len(other) != 0 {
		t.Fatalf("a failed insert left keys behind: %+v", other)
	}

	_, err = s.LatestTrustMetadata(ctx, "acme", "root")
	wantCode(t, err, flotilla.ENotFound)
	meta := func(role string, v int64) store.TrustMetadata {
		return store.TrustMetadata{Tenant: "acme", Role: role, Version: v, Body: []byte(fmt.Sprintf(`{"role":%q,"v":%d}`, role, v)),
			Expires: t0.Add(time.Duration(v) * time.Hour), CreatedAt: t0}
	}
	must(t, s.AddTrustMetadata(ctx, []store.TrustMetadata{meta("root", 1), meta("targets", 1), meta("snapshot", 1), meta("timestamp", 1)}))
	must(t, s.AddTrustMetadata(ctx, []store.TrustMetadata{meta("targets", 2), meta("snapshot", 2), meta("timestamp", 2)}))
	// Two signers race for the same versions: one transaction wins whole.
	err = s.AddTrustMetadata(ctx, []store.TrustMetadata{meta("targets", 3), meta("snapshot", 2)})
	wantCode(t, err, flotilla.EConflict)
	if v, _ := s.LatestTrustVersion(ctx, "acme", "targets"); v != 2 {
		t.Fatalf("targets version after a lost race = %d, want 2", v)
	}
	latest, err := s.LatestTrustMetadata(ctx, "acme", "snapshot")
	must(t, err)
	if latest.Version != 2 || string(latest.Body) != `{"role":"snapshot","v":2}` || !latest.Expires.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("latest snapshot = %+v", latest)
	}
	one, err := s.TrustMetadataVersion(ctx, "acme", "targets", 1)
	must(t, err)
	if one.Version != 1 || string(one.Body) != `{"role":"targets","v":1}` {
		t.Fatalf("targets v1 = %+v", one)
	}
	_, err = s.TrustMetadataVersion(ctx, "beta", "targets", 1)
	wantCode(t, err, flotilla.ENotFound)
	if v, err := s.LatestTrustVersion(ctx, "beta", "root"); err != nil || v != 0 {
		t.Fatalf("beta root version = %d, %v", v, err)
	}
	tenants, err := s.TrustTenants(ctx, "root")
	must(t, err)
	if !slices.Equal(tenants, []string{"acme"}) {
		t.Fatalf("tenants with a root = %v", tenants)
	}
	for v := int64(3); v <= 12; v++ {
		must(t, s.AddTrustMetadata(ctx, []store.TrustMetadata{meta("timestamp", v)}))
	}
	must(t, s.PruneTrustMetadata(ctx, "acme", "timestamp", 5))
	if _, err := s.TrustMetadataVersion(ctx, "acme", "timestamp", 8); err != nil {
		t.Fatalf("pruned a kept version: %v", err)
	}
	_, err = s.TrustMetadataVersion(ctx, "acme", "timestamp", 7)
	wantCode(t, err, flotilla.ENotFound)
	if _, err := s.TrustMetadataVersion(ctx, "acme", "targets", 1); err != nil {
		t.Fatalf("pruning timestamps touched targets: %v", err)
	}
}
