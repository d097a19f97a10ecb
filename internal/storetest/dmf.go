package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

func init() { extraTests["DMF"] = testDMF }

// testDMF: the outbox fills in the transactions that change deployments
// of DMF devices (and delete them), not for other devices; claims lease
// messages; done records what was sent.
func testDMF(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	a := artifact("acme", "fw", "1.0.0", "aaa")
	must(t, s.CreateArtifact(ctx, a))
	must(t, s.CreateDevice(ctx, device("acme", "ddi-1", nil)))
	must(t, s.CreateDevice(ctx, device("acme", "dmf-1", nil)))
	wantCode(t, s.SetDeviceDMF(ctx, "acme", "nope", "main", "ex"), flotilla.ENotFound)
	must(t, s.SetDeviceDMF(ctx, "acme", "dmf-1", "main", "gateway.replies"))
	d, err := s.GetDevice(ctx, "acme", "dmf-1")
	must(t, err)
	if d.DMFExchange != "gateway.replies" || d.DMFLink != "main" {
		t.Fatalf("dmf device = %+v", d)
	}

	// A deployment of each: only the DMF device's is owed a message.
	dd := newDeployment("acme", "ddi-1", a, t0)
	_, err = s.CreateDeployment(ctx, dd, assigned(t0))
	must(t, err)
	dm := newDeployment("acme", "dmf-1", a, t0)
	_, err = s.CreateDeployment(ctx, dm, assigned(t0))
	must(t, err)
	msgs, err := s.ClaimDMF(ctx, "me", "main", t0, t0.Add(time.Minute), 10)
	must(t, err)
	if len(msgs) != 1 || msgs[0].DeviceID != "dmf-1" || msgs[0].DeploymentID != dm.ID || msgs[0].State != string(flotilla.StatePending) {
		t.Fatalf("outbox after two assignments = %+v", msgs)
	}
	// Leased: nobody else gets it until the lease ends.
	if again, _ := s.ClaimDMF(ctx, "other", "main", t0.Add(time.Second), t0.Add(time.Minute), 10); len(again) != 0 {
		t.Fatalf("a leased message claimed again: %+v", again)
	}
	if later, _ := s.ClaimDMF(ctx, "other", "main", t0.Add(2*time.Minute), t0.Add(3*time.Minute), 10); len(later) != 1 {
		t.Fatalf("an expired lease is not claimed again: %+v", later)
	}
	must(t, s.DoneDMF(ctx, msgs[0].ID, dm.ID, "DOWNLOAD_AND_INSTALL", t0))
	if topic, _ := s.LastDMF(ctx, dm.ID); topic != "DOWNLOAD_AND_INSTALL" {
		t.Fatalf("last sent = %q", topic)
	}
	if left, _ := s.ClaimDMF(ctx, "me", "main", t0.Add(time.Hour), t0.Add(2*time.Hour), 10); len(left) != 0 {
		t.Fatalf("a published message stayed: %+v", left)
	}

	// A cancel request is owed a message too, in the same transaction.
	_, err = s.UpdateDeployment(ctx, "acme", "dmf-1", dm.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		d.RetrievedAt = &t0
		return flotilla.RequestCancel(d, t0, "stop")
	})
	must(t, err)
	msgs, _ = s.ClaimDMF(ctx, "me", "main", t0.Add(time.Hour), t0.Add(2*time.Hour), 10)
	if len(msgs) != 1 || msgs[0].State != string(flotilla.StateCancelRequested) {
		t.Fatalf("outbox after a cancel request = %+v", msgs)
	}
	must(t, s.DoneDMF(ctx, msgs[0].ID, dm.ID, "CANCEL_DOWNLOAD", t0))

	// Windows: the DMF device's pending deployment with a window is listed.
	w := newDeployment("acme", "dmf-1", a, t0)
	_, err = s.CreateDeployment(ctx, w, assigned(t0))
	must(t, err)
	open, err := s.OpenDMFWindows(ctx)
	must(t, err)
	if len(open) != 1 || open[0].ID != w.ID || open[0].Window == nil {
		t.Fatalf("open windows = %+v", open)
	}
	msgs, _ = s.ClaimDMF(ctx, "me", "main", t0.Add(time.Hour), t0.Add(2*time.Hour), 10)
	for _, m := range msgs {
		must(t, s.DoneDMF(ctx, m.ID, m.DeploymentID, "x", t0))
	}

	// Deleting the device owes it THING_DELETED, addressed from the row.
	must(t, s.DeleteDevice(ctx, "acme", "dmf-1"))
	msgs, _ = s.ClaimDMF(ctx, "me", "main", t0.Add(time.Hour), t0.Add(2*time.Hour), 10)
	if len(msgs) != 1 || msgs[0].State != "deleted" || msgs[0].Exchange != "gateway.replies" || msgs[0].Link != "main" || msgs[0].DeploymentID != 0 {
		t.Fatalf("outbox after deleting the device = %+v", msgs)
	}
	must(t, s.DoneDMF(ctx, msgs[0].ID, 0, "", t0))
	// Another link's messages are not this link's to publish.
	must(t, s.EnqueueDMF(ctx, store.DMFMessage{Tenant: "acme", DeviceID: "x", State: "deleted", Link: "beta-vhost", Exchange: "e", CreatedAt: t0}))
	if mine, _ := s.ClaimDMF(ctx, "me", "main", t0.Add(3*time.Hour), t0.Add(4*time.Hour), 10); len(mine) != 0 {
		t.Fatalf("claimed another link's message: %+v", mine)
	}
	if theirs, _ := s.ClaimDMF(ctx, "me", "beta-vhost", t0.Add(3*time.Hour), t0.Add(4*time.Hour), 10); len(theirs) != 1 {
		t.Fatalf("link beta-vhost's message: %+v", theirs)
	}
}

func init() { extraTests["ConcurrentDevicePatches"] = testConcurrentDevicePatches }

// testConcurrentDevicePatches: patches of different fields of one device
// at the same time (an operator's labels, a device's attributes) all
// survive.
func testConcurrentDevicePatches(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	must(t, s.CreateDevice(ctx, device("acme", "d", nil)))
	errs := make(chan error, 40)
	for i := range 20 {
		labels := map[string]string{"fleet": "x"}
		attrs := map[string]string{"i": "1"}
		name := fmt.Sprintf("n%d", i)
		go func() {
			_, err := s.UpdateDevice(ctx, "acme", "d", flotilla.DevicePatch{Labels: &labels}, t0)
			errs <- err
		}()
		go func() {
			_, err := s.UpdateDevice(ctx, "acme", "d", flotilla.DevicePatch{Attributes: &attrs, Name: &name}, t0)
			errs <- err
		}()
	}
	for range 40 {
		must(t, <-errs)
	}
	d, err := s.GetDevice(ctx, "acme", "d")
	must(t, err)
	if d.Labels["fleet"] != "x" || d.Attributes["i"] != "1" {
		t.Fatalf("a concurrent patch was lost: labels %v, attributes %v", d.Labels, d.Attributes)
	}
}
