package core_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// countingStore is the real SQLite store, counting artifact reads.
type countingStore struct {
	store.Store
	artifactReads atomic.Int32
}

func (s *countingStore) GetArtifactByID(ctx context.Context, tenant string, id int64) (flotilla.Artifact, error) {
	s.artifactReads.Add(1)
	return s.Store.GetArtifactByID(ctx, tenant, id)
}

// TestDeploymentBaseReadsAReleaseOnce: every device of a rollout asks for
// its deployment; the release it is told about is read once, stays what
// the database holds, and is gone with its release.
func TestDeploymentBaseReadsAReleaseOnce(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{}
	c, _ := newCoreOver(t, func(sq store.Store) store.Store { st.Store = sq; return st })
	tenant := flotilla.DefaultTenant
	must(t, st.CreateTenant(ctx, flotilla.Tenant{Name: tenant}))
	a := flotilla.Artifact{Tenant: tenant, Name: "fw", Version: "2.0.0", Type: "os", Filename: "fw.bin", Size: 100,
		SHA256: "aa", Labels: map[string]string{"stage": "beta"}, Description: "first"}
	must(t, st.CreateArtifact(ctx, &a))
	deps := map[string]int64{}
	for _, dev := range []string{"d1", "d2", "d3"} {
		must(t, st.CreateDevice(ctx, flotilla.Device{Tenant: tenant, ID: dev}))
		d, err := c.AssignDeployment(ctx, admin(), core.AssignRequest{Tenant: tenant, DeviceID: dev, ArtifactName: "fw", ArtifactVersion: "2.0.0"})
		must(t, err)
		deps[dev] = d.ID
	}
	// An operator's change of the release's labels and description reaches
	// no device, and must not be told from a stale copy either.
	desc := "second"
	if _, err := st.UpdateArtifact(ctx, tenant, "fw", "2.0.0", flotilla.ArtifactPatch{Description: &desc}); err != nil {
		t.Fatal(err)
	}
	before := st.artifactReads.Load()
	for dev, id := range deps {
		_, got, err := c.DeploymentBase(ctx, core.DeviceIdentity{Tenant: tenant, DeviceID: dev}, id)
		must(t, err)
		if got.ID != a.ID || got.Name != "fw" || got.Version != "2.0.0" || got.Type != "os" || got.Labels != nil || got.Description != "" {
			t.Fatalf("%s told %+v", dev, got)
		}
		if len(got.Modules) != 1 || len(got.Modules[0].Files) != 1 || got.Modules[0].Files[0].Filename != "fw.bin" {
			t.Fatalf("%s told modules %+v", dev, got.Modules)
		}
	}
	if n := st.artifactReads.Load() - before; n != 1 {
		t.Fatalf("three devices' deployments read the release %d times, want once", n)
	}

	// Once no deployment is active the release can go, and its entry with it.
	for dev, id := range deps {
		_, err := c.DeploymentFeedback(ctx, core.DeviceIdentity{Tenant: tenant, DeviceID: dev}, id, fb("closed", "success"))
		must(t, err)
	}
	must(t, c.DeleteArtifact(ctx, admin(), tenant, "fw", "2.0.0"))
	if _, _, err := c.DeploymentBase(ctx, core.DeviceIdentity{Tenant: tenant, DeviceID: "d1"}, deps["d1"]); !flotilla.IsCode(err, flotilla.ENotFound) {
		t.Fatalf("deployment of a deleted release: %v, want not found", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
