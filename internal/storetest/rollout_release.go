package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

func init() {
	extraTests["RolloutReleaseNamesTheAction"] = testRolloutReleaseNamesTheAction
}

// testRolloutReleaseNamesTheAction: a wave's release reports, for each
// deployment, what a device is told of it (type, force time, maintenance
// window, delivery) as the deployment holds it, so that a cached poll
// answer can name it without a read.
func testRolloutReleaseNamesTheAction(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := seedKiosks(t, s, 3)
	forceAt := t0.Add(48 * time.Hour)
	r := createEven(t, s, flotilla.Rollout{ID: "r-timed", Tenant: "acme", Name: "timed", ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Selector: "app=kiosk", Type: flotilla.TypeTimeForced, ForceAt: &forceAt, Delivery: flotilla.DeliveryPull, WaveCount: 1,
		Window: &flotilla.MaintenanceWindow{Schedule: "0 0 2 * * ?", Duration: "02:00:00", Timezone: "UTC"},
		Status: flotilla.RolloutCreating, CreatedAt: t0, UpdatedAt: t0})
	_, err := s.StartRollout(ctx, "acme", r.ID, t0)
	must(t, err)
	_, err = s.ClaimRollouts(ctx, "me", t0, t0.Add(time.Minute), 10)
	must(t, err)
	now := t0.Add(time.Second)
	snap, err := s.RolloutSnapshot(ctx, r.ID, now, store.SnapshotReads{NextWave: true})
	must(t, err)
	touched, err := s.ApplyRolloutPlan(ctx, r.ID, "me", snap.Rollout.Version, rollout.Compute(snap, now).Actions, now)
	must(t, err)
	if len(touched) != 3 {
		t.Fatalf("released %d deployments, want 3", len(touched))
	}
	for _, tc := range touched {
		d, err := s.GetDeployment(ctx, "acme", tc.ID)
		must(t, err)
		if tc.State != flotilla.StatePending || d.State != tc.State || tc.DeviceID != d.DeviceID || tc.Type != flotilla.TypeTimeForced || tc.Type != d.Type ||
			tc.ForceAt == nil || !tc.ForceAt.Equal(forceAt) || !tc.ForceAt.Equal(*d.ForceAt) || tc.Delivery != d.Delivery || tc.Delivery != flotilla.DeliveryPull ||
			tc.Window == nil || !reflect.DeepEqual(tc.Window, d.Window) || !reflect.DeepEqual(tc.Window, r.Window) {
			t.Fatalf("released %+v, the deployment holds %+v", tc, d)
		}
	}
}
