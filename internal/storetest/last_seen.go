package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/store"
)

func init() {
	extraTests["LastSeenBetweenEveryTenant"] = testLastSeenBetweenEveryTenant
}

// testLastSeenBetweenEveryTenant: the offline sweep's read finds the
// devices of every tenant last seen in [from, to), and no device never
// seen.
func testLastSeenBetweenEveryTenant(t *testing.T, s store.Store) {
	ctx := context.Background()
	var seen []store.DeviceSeen
	for _, tenant := range []string{"acme", "beta", "zulu"} {
		seedTenant(t, s, tenant)
		for i, id := range []string{"early", "from", "inside", "to", "never"} {
			must(t, s.CreateDevice(ctx, device(tenant, id, map[string]string{})))
			if id != "never" {
				seen = append(seen, store.DeviceSeen{Tenant: tenant, ID: id, At: t0.Add(time.Duration(i) * time.Minute)})
			}
		}
	}
	_, err := s.TouchDevices(ctx, seen, t0)
	must(t, err)
	gone, err := s.DevicesLastSeenBetween(ctx, t0.Add(time.Minute), t0.Add(3*time.Minute))
	must(t, err)
	var got []string
	for _, d := range gone {
		got = append(got, fmt.Sprintf("%s/%s@%v", d.Tenant, d.ID, d.At.Sub(t0)))
	}
	slices.Sort(got)
	want := []string{"acme/from@1m0s", "acme/inside@2m0s", "beta/from@1m0s", "beta/inside@2m0s", "zulu/from@1m0s", "zulu/inside@2m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("DevicesLastSeenBetween = %v, want %v", got, want)
	}
}
