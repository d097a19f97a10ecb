package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

func init() {
	extraTests["RolloutEvenSnapshot"] = testRolloutEvenSnapshot
}

// testRolloutEvenSnapshot: the snapshot taken inside the database has the
// members, waves and sizes that reading the members and rollout.Split give.
func testRolloutEvenSnapshot(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "beta")
	// Created out of id order: the split follows ids, not insertion.
	for i := 22; i >= 0; i-- {
		region := "eu"
		if i%3 == 0 {
			region = "us"
		}
		must(t, s.CreateDevice(ctx, device("acme", fmt.Sprintf("k-%02d", i), map[string]string{"app": "kiosk", "region": region})))
	}
	for i := range 4 {
		must(t, s.CreateDevice(ctx, device("acme", fmt.Sprintf("p-%d", i), map[string]string{"app": "pos"})))
		must(t, s.CreateDevice(ctx, device("beta", fmt.Sprintf("k-%02d", i), map[string]string{"app": "kiosk", "region": "eu"})))
	}
	a := artifact("acme", "fw", "3.0.0", "abc")
	must(t, s.CreateArtifact(ctx, a))
	num := 0
	for _, sel := range []string{"app=kiosk", "region=eu", "app in (kiosk, pos)", "app=none"} {
		for _, n := range []int{1, 4, 30} {
			num++
			r := evenRollout(t, s, fmt.Sprintf("r-even-%d", num), sel, n, a, flotilla.Policy{})
			members, err := s.RolloutMembers(ctx, "acme", sel)
			must(t, err)
			assign, defs, err := rollout.Split(members, n, nil)
			must(t, err)
			got, waves, err := s.GetRollout(ctx, "acme", r.ID)
			must(t, err)
			if got.Status != flotilla.RolloutReady || got.Total != len(members) || len(waves) != len(defs) {
				t.Fatalf("%q in %d waves: rollout %s, %d devices, %d waves; want ready, %d, %d", sel, n, got.Status, got.Total, len(waves), len(members), len(defs))
			}
			for i, w := range waves {
				if w.Name != defs[i].Name || w.Size != defs[i].Size {
					t.Errorf("%q in %d waves: wave %d is %s of %d, want %s of %d", sel, n, i, w.Name, w.Size, defs[i].Name, defs[i].Size)
				}
			}
			list, err := s.ListRolloutDevices(ctx, "acme", r.ID, flotilla.RolloutDeviceFilter{Limit: 1000})
			must(t, err)
			var have, want []string
			for _, d := range list {
				have = append(have, fmt.Sprintf("%s:%d", d.DeviceID, d.Wave))
			}
			for i, m := range members {
				want = append(want, fmt.Sprintf("%s:%d", m.ID, assign[i]))
			}
			slices.Sort(have)
			slices.Sort(want)
			if !slices.Equal(have, want) {
				t.Fatalf("%q in %d waves: members %v, want %v", sel, n, have, want)
			}
			_, err = s.MaterializeEvenRollout(ctx, r.ID, n, t0)
			wantCode(t, err, flotilla.EConflict)
		}
	}
}

// evenRollout creates a rollout of acme's devices matching sel in waves
// even waves and takes its snapshot in the database.
func evenRollout(t *testing.T, s store.Store, id, sel string, waves int, a *flotilla.Artifact, p flotilla.Policy) flotilla.Rollout {
	t.Helper()
	return createEven(t, s, flotilla.Rollout{ID: id, Tenant: "acme", Name: id, ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Selector: sel, Type: flotilla.TypeForced, Delivery: flotilla.DeliveryPull, WaveCount: waves, Policy: p,
		Status: flotilla.RolloutCreating, CreatedAt: t0, UpdatedAt: t0})
}

// createEven creates r and materializes its members in r.WaveCount even
// waves.
func createEven(t *testing.T, s store.Store, r flotilla.Rollout) flotilla.Rollout {
	t.Helper()
	must(t, s.CreateRollout(context.Background(), &r))
	done, err := s.MaterializeEvenRollout(context.Background(), r.ID, r.WaveCount, t0)
	must(t, err)
	if !done {
		t.Fatalf("%q in %d waves: not taken in the database", r.Selector, r.WaveCount)
	}
	return r
}
