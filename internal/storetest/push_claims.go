package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

func init() {
	extraTests["PushClaims"] = testPushClaims
}

// testPushClaims: a claim leases open push deployments to one owner and
// records an update id for those without one, in the same transaction.
func testPushClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	a := artifact("acme", "fw", "2.0.0", "abc")
	must(t, s.CreateArtifact(ctx, a))
	var ids []int64
	for i, uid := range []string{"", "0b1c2d4e-0000-4000-8000-000000000007"} {
		dev := fmt.Sprintf("node-%d", i)
		must(t, s.CreateDevice(ctx, device("acme", dev, nil)))
		d := newDeployment("acme", dev, a, t0)
		d.Delivery, d.UpdateID, d.Window = flotilla.DeliveryPush, uid, nil
		_, err := s.CreateDeployment(ctx, d, assigned(t0))
		must(t, err)
		ids = append(ids, d.ID)
	}
	minted := 0
	newID := func() string {
		minted++
		return fmt.Sprintf("0b1c2d4e-0000-4000-8000-%012d", minted)
	}
	got, err := s.ClaimPushDeployments(ctx, "a", t0, t0.Add(time.Minute), 10, nil, newID)
	must(t, err)
	if len(got) != 2 || minted != 1 {
		t.Fatalf("claimed %d, minted %d ids; want 2 and 1", len(got), minted)
	}
	want := map[int64]string{ids[0]: "0b1c2d4e-0000-4000-8000-000000000001", ids[1]: "0b1c2d4e-0000-4000-8000-000000000007"}
	for _, d := range got {
		stored, err := s.GetDeployment(ctx, "acme", d.ID)
		must(t, err)
		if d.UpdateID != want[d.ID] || stored.UpdateID != want[d.ID] {
			t.Errorf("deployment %d: claimed with update id %q, stored %q; want %q", d.ID, d.UpdateID, stored.UpdateID, want[d.ID])
		}
	}
	// Leased to a: nothing for b until the lease ends; then the ids stay.
	if got, err := s.ClaimPushDeployments(ctx, "b", t0.Add(time.Second), t0.Add(time.Minute), 10, nil, newID); err != nil || len(got) != 0 {
		t.Fatalf("b claimed %d during a's lease (%v)", len(got), err)
	}
	got, err = s.ClaimPushDeployments(ctx, "b", t0.Add(2*time.Minute), t0.Add(3*time.Minute), 10, nil, newID)
	must(t, err)
	if len(got) != 2 || minted != 1 {
		t.Fatalf("after the lease: b claimed %d, %d ids minted; want 2 and 1", len(got), minted)
	}
	for _, d := range got {
		if d.UpdateID != want[d.ID] {
			t.Errorf("deployment %d: update id %q after a new claim, want %q", d.ID, d.UpdateID, want[d.ID])
		}
	}
}
