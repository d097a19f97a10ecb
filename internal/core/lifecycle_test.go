package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/fakestore"
)

// recorder keeps every published event.
type recorder struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recorder) Publish(e events.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

// deploymentStates lists the states the deployment events of one device
// announced, in order.
func (r *recorder) deploymentStates(device string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		if e.Type != events.TypeDeployment || e.DeviceID != device {
			continue
		}
		var m struct {
			State string `json:"state"`
		}
		json.Unmarshal(e.Data, &m)
		out = append(out, m.State)
	}
	return out
}

// fakeCore is a core over the in-memory fake store, with a frozen clock
// that tick advances, and two devices: a polling one and a push node.
func fakeCore(t *testing.T) (*core.Core, *fakestore.Store, *recorder, func()) {
	t.Helper()
	st := fakestore.New()
	rec := &recorder{}
	c := core.New(st, nil, rec, nil, core.Config{})
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c.Now = func() time.Time { return now }
	tick := func() { now = now.Add(time.Second) }
	st.AddDevice(flotilla.Device{Tenant: "acme", ID: "pull-1"})
	st.AddDevice(flotilla.Device{Tenant: "acme", ID: "node-1", Address: "http://127.0.0.1:9"})
	a := flotilla.Artifact{Tenant: "acme", Name: "fw", Version: "2.0.0", Filename: "fw.bin", Size: 100}
	st.AddArtifact(&a)
	return c, st, rec, tick
}

func fb(exec, fin string, details ...string) flotilla.Feedback {
	return flotilla.Feedback{Execution: exec, Finished: fin, Details: details}
}

// TestPushAndPullWalkTheSameTransitions runs each scenario's reports
// through the DDI path (a device's feedback) and through the push path
// (what the push transport reports for a node) and requires the same
// states, history, timestamps and announcements from both.
func TestPushAndPullWalkTheSameTransitions(t *testing.T) {
	type step struct {
		f      flotilla.Feedback
		cancel bool // a cancel request precedes this report
	}
	scenarios := map[string][]step{
		"success": {{f: fb("download", "", "node accepted the update")}, {f: fb("downloaded", "", "node is verifying")},
			{f: fb("proceeding", "", "node is applying")}, {f: fb("closed", "success", "node runs 2.0.0")}},
		"failure": {{f: fb("download", "")}, {f: fb("closed", "failure", "node: checksum mismatch")}},
		"cancel rejected resumes where it was": {{f: fb("download", "")}, {f: fb("rejected", "", "too late"), cancel: true},
			{f: fb("closed", "success")}},
		"cancel confirmed": {{f: fb("download", "")}, {f: fb("canceled", ""), cancel: true}},
		"rejected":         {{f: fb("rejected", "", "not now")}},
	}
	for name, steps := range scenarios {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c, st, rec, tick := fakeCore(t)
			pull, err := c.AssignDeployment(ctx, admin(), core.AssignRequest{Tenant: "acme", DeviceID: "pull-1", ArtifactName: "fw", ArtifactVersion: "2.0.0"})
			if err != nil {
				t.Fatal(err)
			}
			a, _ := st.GetArtifact(ctx, "acme", "fw", "2.0.0")
			push, err := c.CreatePushDeployment(ctx, a, "acme", "node-1", "6f1c2d4e-0a2b-4c3d-8e4f-001122334455", "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			// The device fetched what it runs (DDI's deploymentBase); a push
			// node has the update from its start request.
			id := core.DeviceIdentity{Tenant: "acme", DeviceID: "pull-1"}
			if _, _, err := c.DeploymentBase(ctx, id, pull.ID); err != nil {
				t.Fatal(err)
			}
			st.UpdateDeployment(ctx, "acme", "node-1", push.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
				return flotilla.Retrieve(d, c.Now()), nil
			})
			for i, s := range steps {
				tick()
				if s.cancel {
					if _, err := c.RequestCancel(ctx, core.RefOf(pull), "operator"); err != nil {
						t.Fatal(err)
					}
					if _, err := c.RequestCancel(ctx, core.RefOf(push), "operator"); err != nil {
						t.Fatal(err)
					}
				}
				tick()
				var pullErr, pushErr error
				if s.cancel {
					_, pullErr = c.CancelFeedback(ctx, id, pull.ID, s.f)
				} else {
					_, pullErr = c.DeploymentFeedback(ctx, id, pull.ID, s.f)
				}
				_, pushErr = c.Report(ctx, core.RefOf(push), core.Report{Feedback: s.f, Cancel: s.cancel, NodeIP: "127.0.0.1"})
				if (pullErr == nil) != (pushErr == nil) {
					t.Fatalf("step %d: pull %v, push %v", i, pullErr, pushErr)
				}
				a, _ := st.GetDeployment(ctx, "acme", pull.ID)
				b, _ := st.GetDeployment(ctx, "acme", push.ID)
				if err := sameWalk(a, b); err != nil {
					t.Fatalf("step %d (%s): %v", i, s.f.Execution, err)
				}
			}
			if p, q := rec.deploymentStates("pull-1"), rec.deploymentStates("node-1"); fmt.Sprint(p) != fmt.Sprint(q) {
				t.Fatalf("announced states differ:\n pull %v\n push %v", p, q)
			}
		})
	}
}

// sameWalk compares what two deployments went through, ignoring their
// identities and the first history entry (how each was created).
func sameWalk(a, b flotilla.Deployment) error {
	if a.State != b.State || a.PrevState != b.PrevState || a.Message != b.Message || !a.UpdatedAt.Equal(b.UpdatedAt) ||
		(a.FinishedAt == nil) != (b.FinishedAt == nil) || a.FinishedAt != nil && !a.FinishedAt.Equal(*b.FinishedAt) {
		return fmt.Errorf("pull %s/%s %q %v %v, push %s/%s %q %v %v", a.State, a.PrevState, a.Message, a.UpdatedAt, a.FinishedAt,
			b.State, b.PrevState, b.Message, b.UpdatedAt, b.FinishedAt)
	}
	if len(a.History) != len(b.History) {
		return fmt.Errorf("history: pull %d entries, push %d", len(a.History), len(b.History))
	}
	for i := 1; i < len(a.History); i++ {
		x, y := a.History[i], b.History[i]
		if x.State != y.State || x.Execution != y.Execution || x.Finished != y.Finished || !x.At.Equal(y.At) || fmt.Sprint(x.Details) != fmt.Sprint(y.Details) || x.Source != y.Source {
			return fmt.Errorf("history entry %d: pull %+v, push %+v", i, x, y)
		}
	}
	return nil
}

// TestPushCancelRejectedRestoresTheInterruptedState: a node that refuses
// to abort continues from where the cancel found it, not from pending.
func TestPushCancelRejectedRestoresTheInterruptedState(t *testing.T) {
	ctx := context.Background()
	c, st, _, _ := fakeCore(t)
	a, _ := st.GetArtifact(ctx, "acme", "fw", "2.0.0")
	d, _ := c.CreatePushDeployment(ctx, a, "acme", "node-1", "6f1c2d4e-0a2b-4c3d-8e4f-001122334455", "")
	ref := core.RefOf(d)
	for _, f := range []flotilla.Feedback{fb("download", ""), fb("downloaded", ""), fb("proceeding", "")} {
		if _, err := c.Report(ctx, ref, core.Report{Feedback: f}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := c.RequestCancel(ctx, ref, "operator")
	if got.State != flotilla.StateCancelRequested || got.PrevState != flotilla.StateInstalling {
		t.Fatalf("cancel request: %s (prev %s)", got.State, got.PrevState)
	}
	got, err := c.Report(ctx, ref, core.Report{Feedback: fb("rejected", "", "node refused to abort: applying"), Cancel: true})
	if err != nil || got.State != flotilla.StateInstalling || got.PrevState != "" {
		t.Fatalf("after the node refused: %s (prev %q), %v", got.State, got.PrevState, err)
	}
	got, _ = c.RequestCancel(ctx, ref, "operator again")
	got, err = c.Report(ctx, ref, core.Report{Feedback: fb("canceled", "", "node aborted the update"), Cancel: true})
	if err != nil || got.State != flotilla.StateCanceled || got.FinishedAt == nil {
		t.Fatalf("after the node aborted: %s, %v", got.State, err)
	}
}

// TestSupersededPushDeploymentIsAnnounced: a new push update moves the
// node's previous one, and watchers hear of it.
func TestSupersededPushDeploymentIsAnnounced(t *testing.T) {
	ctx := context.Background()
	c, st, rec, _ := fakeCore(t)
	a, _ := st.GetArtifact(ctx, "acme", "fw", "2.0.0")
	first, _ := c.CreatePushDeployment(ctx, a, "acme", "node-1", "6f1c2d4e-0a2b-4c3d-8e4f-000000000001", "")
	c.Report(ctx, core.RefOf(first), core.Report{Feedback: fb("download", "")})
	st.UpdateDeployment(ctx, "acme", "node-1", first.ID, func(d flotilla.Deployment) (flotilla.Change, error) {
		return flotilla.Retrieve(d, c.Now()), nil
	})
	if _, err := c.CreatePushDeployment(ctx, a, "acme", "node-1", "6f1c2d4e-0a2b-4c3d-8e4f-000000000002", ""); err != nil {
		t.Fatal(err)
	}
	old, _ := st.GetDeployment(ctx, "acme", first.ID)
	if old.State != flotilla.StateCancelRequested {
		t.Fatalf("superseded deployment is %s", old.State)
	}
	states := rec.deploymentStates("node-1")
	want := []string{"pending", "downloading", "cancel_requested", "pending"}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Fatalf("announced %v, want %v", states, want)
	}
}

// TestPushNodeVersionIsRecorded: the version a node reports after an
// install becomes the device's version.
func TestPushNodeVersionIsRecorded(t *testing.T) {
	ctx := context.Background()
	c, st, rec, _ := fakeCore(t)
	a, _ := st.GetArtifact(ctx, "acme", "fw", "2.0.0")
	d, _ := c.CreatePushDeployment(ctx, a, "acme", "node-1", "6f1c2d4e-0a2b-4c3d-8e4f-000000000001", "")
	c.Report(ctx, core.RefOf(d), core.Report{Feedback: fb("download", "")})
	c.Report(ctx, core.RefOf(d), core.Report{Feedback: fb("closed", "success"), Version: "2.0.0-node"})
	if dev, _ := st.GetDevice(ctx, "acme", "node-1"); dev.Version != "2.0.0-node" {
		t.Fatalf("device version %q, want the version the node reported", dev.Version)
	}
	if got := rec.deploymentStates("node-1"); fmt.Sprint(got) != "[pending downloading succeeded]" {
		t.Fatalf("announced %v", got)
	}
}

func admin() core.Principal {
	return core.Principal{Token: flotilla.Token{Tenant: flotilla.DefaultTenant, Scopes: []flotilla.Scope{flotilla.ScopeAdmin}}}
}
