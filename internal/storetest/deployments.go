package storetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

func init() {
	extraTests["Deployments"] = testDeployments
	extraTests["DeploymentUpdateAborts"] = testDeploymentUpdateAborts
}

func newDeployment(tenant, device string, a *flotilla.Artifact, at time.Time) *flotilla.Deployment {
	return &flotilla.Deployment{Tenant: tenant, DeviceID: device, ArtifactID: a.ID, ArtifactName: a.Name, ArtifactVersion: a.Version,
		Type: flotilla.TypeForced, Delivery: flotilla.DeliveryPull, State: flotilla.StatePending, Attempt: 1,
		CreatedAt: at, UpdatedAt: at, StartedAt: &at, Window: &flotilla.MaintenanceWindow{Schedule: "0 0 1 * * ?", Duration: "01:00:00", Timezone: "UTC"}}
}

func assigned(at time.Time) flotilla.DeploymentEvent {
	return flotilla.DeploymentEvent{At: at, Source: "server", Details: []string{"assigned"}}
}

func testDeployments(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "beta")
	a := artifact("acme", "fw", "2.0.0", "aaa")
	must(t, s.CreateArtifact(ctx, a))
	must(t, s.CreateDevice(ctx, device("acme", "k1", nil)))
	checkPoll(t, s, "k1", nil, 0, true) // no deployment yet: the flag still comes
	// The device's token rides along, so that a cold poll reads it once;
	// a device that does not exist says so.
	hash := "h-k1-" + t.Name()
	_, err := s.UpdateDevice(ctx, "acme", "k1", flotilla.DevicePatch{TokenHash: &hash}, t0)
	must(t, err)
	if p, err := s.DevicePoll(ctx, "acme", "k1"); err != nil || !p.Registered || p.TokenHash != hash {
		t.Fatalf("DevicePoll(k1) = registered %v, token hash %q, %v; want true, %q", p.Registered, p.TokenHash, err, hash)
	}
	if p, err := s.DevicePoll(ctx, "acme", "ghost"); err != nil || p.Registered || p.TokenHash != "" {
		t.Fatalf("DevicePoll(ghost) = registered %v, token hash %q, %v; want false, none", p.Registered, p.TokenHash, err)
	}
	if p, err := s.DevicePoll(ctx, "beta", "k1"); err != nil || p.Registered {
		t.Fatalf("DevicePoll(beta/k1) = registered %v, %v: another tenant's device", p.Registered, err)
	}
	must(t, s.SetAttributesRequested(ctx, "acme", "k1", false))
	checkPoll(t, s, "k1", nil, 0, false)
	must(t, s.SetAttributesRequested(ctx, "acme", "k1", true))

	_, err = s.CreateDeployment(ctx, newDeployment("acme", "ghost", a, t0), assigned(t0))
	wantCode(t, err, flotilla.ENotFound)

	d1 := newDeployment("acme", "k1", a, t0)
	sup, err := s.CreateDeployment(ctx, d1, assigned(t0))
	must(t, err)
	if d1.ID == 0 || len(sup) != 0 {
		t.Fatalf("first deployment: id %d, superseded %v", d1.ID, sup)
	}
	got, err := s.GetDeployment(ctx, "acme", d1.ID)
	must(t, err)
	if got.State != flotilla.StatePending || got.Window == nil || got.Window.Duration != "01:00:00" || len(got.History) != 1 ||
		got.History[0].State != flotilla.StatePending || got.History[0].Details[0] != "assigned" || got.ArtifactVersion != "2.0.0" {
		t.Fatalf("GetDeployment = %+v", got)
	}
	_, err = s.GetDeployment(ctx, "beta", d1.ID)
	wantCode(t, err, flotilla.ENotFound)
	brief, err := s.GetDeploymentBrief(ctx, "acme", d1.ID)
	must(t, err)
	if got.History = nil; brief.History != nil || !reflect.DeepEqual(brief, got) {
		t.Fatalf("GetDeploymentBrief = %+v, want GetDeployment's %+v without history", brief, got)
	}
	_, err = s.GetDeploymentBrief(ctx, "beta", d1.ID)
	wantCode(t, err, flotilla.ENotFound)

	// d1 was never fetched: a new assignment cancels it on the server.
	d2 := newDeployment("acme", "k1", a, t0.Add(time.Minute))
	sup, err = s.CreateDeployment(ctx, d2, assigned(t0.Add(time.Minute)))
	must(t, err)
	if len(sup) != 1 || sup[0].ID != d1.ID || sup[0].State != flotilla.StateCanceled {
		t.Fatalf("superseded = %+v, want d1 canceled", sup)
	}
	// d2 is fetched and downloading: the next assignment asks the device.
	code := 200
	_, err = s.UpdateDeployment(ctx, "acme", "k1", d2.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		now := t0.Add(2 * time.Minute)
		d.RetrievedAt, d.State, d.UpdatedAt, d.ProgressCnt, d.ProgressOf = &now, flotilla.StateDownloading, now, 3, 10
		return flotilla.Change{Deployment: d, Event: &flotilla.DeploymentEvent{At: now, Execution: "download", Cnt: 3, Of: 10, Code: &code, Details: []string{"a", "b"}, Source: "device"}}, nil
	})
	must(t, err)
	d3 := newDeployment("acme", "k1", a, t0.Add(3*time.Minute))
	sup, err = s.CreateDeployment(ctx, d3, assigned(t0.Add(3*time.Minute)))
	must(t, err)
	if len(sup) != 1 || sup[0].ID != d2.ID || sup[0].State != flotilla.StateCancelRequested {
		t.Fatalf("superseded = %+v, want d2 cancel_requested", sup)
	}
	got, _ = s.GetDeployment(ctx, "acme", d2.ID)
	if got.PrevState != flotilla.StateDownloading || got.ProgressCnt != 3 || len(got.History) != 3 || got.History[1].Code == nil || *got.History[1].Code != 200 {
		t.Fatalf("d2 after supersede = %+v", got)
	}

	open, installed, err := s.DeviceActions(ctx, "acme", "k1")
	must(t, err)
	if len(open) != 2 || open[0].ID != d2.ID || open[1].ID != d3.ID || installed != nil {
		t.Fatalf("DeviceActions = %+v, %v", open, installed)
	}

	checkPoll(t, s, "k1", []int64{d2.ID, d3.ID}, 0, true)

	// d3 succeeds: a change marked Installed records the device's new
	// version and asks it for its attributes again.
	must(t, s.SetAttributesRequested(ctx, "acme", "k1", false))
	checkPoll(t, s, "k1", []int64{d2.ID, d3.ID}, 0, false)
	_, err = s.UpdateDeployment(ctx, "acme", "k1", d3.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		now := t0.Add(4 * time.Minute)
		h := true
		d.State, d.FinishedAt, d.UpdatedAt, d.Healthy = flotilla.StateSucceeded, &now, now, &h
		return flotilla.Change{Deployment: d, Event: &flotilla.DeploymentEvent{At: now, Execution: "closed", Finished: "success", Source: "device"},
			Installed: true}, nil
	})
	must(t, err)
	_, installed, _ = s.DeviceActions(ctx, "acme", "k1")
	if installed == nil || installed.ID != d3.ID || installed.Healthy == nil || !*installed.Healthy {
		t.Fatalf("installed = %+v", installed)
	}
	dev, _ := s.GetDevice(ctx, "acme", "k1")
	if dev.Version != "2.0.0" {
		t.Fatalf("device version = %q, want 2.0.0", dev.Version)
	}
	if on, _ := s.AttributesRequested(ctx, "acme", "k1"); !on {
		t.Fatal("attributes not requested after a successful update")
	}
	checkPoll(t, s, "k1", []int64{d2.ID}, d3.ID, true)
	list, err := s.ListDeviceDeployments(ctx, "acme", "k1", 10)
	must(t, err)
	if len(list) != 3 || list[0].ID != d3.ID || len(list[2].History) != 2 {
		t.Fatalf("ListDeviceDeployments = %d entries", len(list))
	}
	latest, err := s.LatestDeployments(ctx, "acme", []string{"k1", "k2", "nobody"})
	must(t, err)
	if len(latest) != 1 || latest["k1"].ID != d3.ID || latest["k1"].State != flotilla.StateSucceeded {
		t.Fatalf("LatestDeployments = %+v", latest)
	}
	if ok, _ := s.ArtifactAssigned(ctx, "acme", "k1", a.ID); !ok {
		t.Fatal("ArtifactAssigned = false")
	}
	if ok, _ := s.ArtifactAssigned(ctx, "acme", "k2", a.ID); ok {
		t.Fatal("ArtifactAssigned for unassigned device")
	}
	// An open deployment (d2, cancel_requested) keeps the artifact.
	_, _, err = s.DeleteArtifact(ctx, "acme", "fw", "2.0.0")
	wantCode(t, err, flotilla.EConflict)
	// Deleting the device takes its deployments along.
	must(t, s.DeleteDevice(ctx, "acme", "k1"))
	_, err = s.GetDeployment(ctx, "acme", d3.ID)
	wantCode(t, err, flotilla.ENotFound)
	_, _, err = s.DeleteArtifact(ctx, "acme", "fw", "2.0.0")
	must(t, err)
}

func testDeploymentUpdateAborts(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	a := artifact("acme", "fw", "1.0.0", "aaa")
	must(t, s.CreateArtifact(ctx, a))
	must(t, s.CreateDevice(ctx, device("acme", "k1", nil)))
	d := newDeployment("acme", "k1", a, t0)
	_, err := s.CreateDeployment(ctx, d, assigned(t0))
	must(t, err)
	_, err = s.UpdateDeployment(ctx, "acme", "k1", d.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		return flotilla.Change{}, flotilla.Errorf(flotilla.EGone, "no")
	})
	wantCode(t, err, flotilla.EGone)
	_, err = s.UpdateDeployment(ctx, "acme", "other-device", d.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		return flotilla.Change{Deployment: d}, nil
	})
	wantCode(t, err, flotilla.ENotFound)
	got, _ := s.GetDeployment(ctx, "acme", d.ID)
	if got.State != flotilla.StatePending || len(got.History) != 1 {
		t.Fatalf("deployment changed by aborted updates: %+v", got)
	}
	// Steps folded into one change (flotilla.ApplySteps): each keeps its
	// history entry, in order, and counts as the device's.
	steps := []flotilla.Step{{Feedback: flotilla.Feedback{Execution: "download"}, At: t0.Add(time.Second)},
		{Feedback: flotilla.Feedback{Execution: "downloaded"}, At: t0.Add(2 * time.Second)},
		{Feedback: flotilla.Feedback{Execution: "closed", Finished: "success"}, At: t0.Add(3 * time.Second)}}
	out, err := s.UpdateDeployment(ctx, "acme", "k1", d.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		return flotilla.ApplySteps(d, steps)
	})
	must(t, err)
	got, _ = s.GetDeployment(ctx, "acme", d.ID)
	var states []flotilla.DeploymentState
	for _, h := range got.History[1:] {
		states = append(states, h.State)
	}
	want := []flotilla.DeploymentState{flotilla.StateDownloading, flotilla.StateDownloaded, flotilla.StateSucceeded}
	if out.State != flotilla.StateSucceeded || !slices.Equal(states, want) || got.DeviceEvents != 3 || !got.History[2].At.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after three steps in one change: %s, history %v, %d device events", out.State, states, got.DeviceEvents)
	}
}

// checkPoll checks DevicePoll against the device's open deployments (ids,
// oldest first), its last success (0: none) and its attributes flag.
func checkPoll(t *testing.T, s store.Store, device string, open []int64, installed int64, attrs bool) {
	t.Helper()
	p, err := s.DevicePoll(context.Background(), "acme", device)
	must(t, err)
	var ids []int64
	for _, d := range p.Open {
		ids = append(ids, d.ID)
	}
	var got int64
	if p.Installed != nil {
		got = p.Installed.ID
	}
	if fmt.Sprint(ids) != fmt.Sprint(open) || got != installed || p.AttributesRequested != attrs {
		t.Fatalf("DevicePoll(%s) = open %v, installed %d, attributes %v; want %v, %d, %v", device, ids, got, p.AttributesRequested, open, installed, attrs)
	}
}
