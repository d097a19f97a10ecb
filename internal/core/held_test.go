package core_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
)

// heldOp is one thing that happens to a pull deployment: a feedback from
// its device, an operator's cancel, or a read through the management API.
type heldOp struct {
	f      flotilla.Feedback
	cancel bool // the operator cancels (no feedback)
	read   bool // the operator reads the deployment
	answer bool // the feedback answers the cancel request
}

// TestHeldFeedbackEndsWhereWritingAtOnceEnds runs each scenario on a core
// that holds intermediate feedback and on one that writes every report at
// once: each report must get the same answer, and once the held steps are
// written, the stored deployments must be the same (state, history,
// timestamps).
func TestHeldFeedbackEndsWhereWritingAtOnceEnds(t *testing.T) {
	scenarios := map[string][]heldOp{
		"success": {{f: fb("download", "")}, {f: fb("downloaded", "")}, {f: fb("proceeding", "", "installing")}, {f: fb("closed", "success", "done")}},
		"failure": {{f: fb("download", "")}, {f: fb("downloaded", "")}, {f: fb("proceeding", "")}, {f: fb("closed", "failure", "bad")}},
		"cancel between steps": {{f: fb("download", "")}, {f: fb("downloaded", "")}, {cancel: true},
			{f: fb("proceeding", "")}, {f: fb("canceled", ""), answer: true}},
		"cancel rejected": {{f: fb("download", "")}, {f: fb("downloaded", "")}, {cancel: true}, {f: fb("rejected", "", "too late"), answer: true},
			{f: fb("proceeding", "")}, {f: fb("closed", "success")}},
		"read between steps": {{f: fb("download", "")}, {f: fb("downloaded", "")}, {read: true}, {f: fb("proceeding", "")}, {f: fb("closed", "success")}},
		"quota reached":      {{f: fb("download", "")}, {f: fb("downloaded", "")}, {f: fb("proceeding", "")}, {f: fb("proceeding", "")}, {f: fb("closed", "success")}},
		"progress only":      {{f: fb("download", "")}, {f: flotilla.Feedback{Execution: "proceeding", Cnt: 1, Of: 4}}, {f: flotilla.Feedback{Execution: "proceeding", Cnt: 3, Of: 4}}},
		"download only type": {{f: fb("download", "")}, {f: fb("proceeding", "")}, {f: fb("downloaded", "")}},
		"invalid feedback":   {{f: fb("download", "")}, {f: fb("proceeding", "")}, {f: fb("bogus", "")}, {f: fb("closed", "success")}},
	}
	for name, ops := range scenarios {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			run := func(hold time.Duration) (flotilla.Deployment, []string, []bool) {
				c, st, _, tick := fakeCore(t)
				c.Config.HoldFeedback = hold
				c.Config.Quotas.StatusEntries = 3
				req := core.AssignRequest{Tenant: "acme", DeviceID: "pull-1", ArtifactName: "fw", ArtifactVersion: "2.0.0"}
				if name == "download only type" {
					req.Type = string(flotilla.TypeDownloadOnly)
				}
				d, err := c.AssignDeployment(ctx, admin(), req)
				if err != nil {
					t.Fatal(err)
				}
				id := core.DeviceIdentity{Tenant: "acme", DeviceID: "pull-1"}
				c.DeploymentBase(ctx, id, d.ID)
				var answers []string
				var heldOnce []bool
				for _, op := range ops {
					tick()
					before, _ := st.GetDeployment(ctx, "acme", d.ID)
					var err error
					switch {
					case op.cancel:
						_, err = c.CancelDeployment(ctx, admin(), "acme", "pull-1", d.ID)
					case op.read:
						var got flotilla.Deployment
						got, err = c.GetDeviceDeployment(ctx, admin(), "acme", "pull-1", d.ID)
						answers = append(answers, fmt.Sprint(got.State, len(got.History)))
					case op.answer:
						_, err = c.CancelFeedback(ctx, id, d.ID, op.f)
					default:
						_, err = c.DeploymentFeedback(ctx, id, d.ID, op.f)
					}
					answers = append(answers, fmt.Sprint(flotilla.ErrorCode(err)))
					after, _ := st.GetDeployment(ctx, "acme", d.ID)
					heldOnce = append(heldOnce, err == nil && len(after.History) == len(before.History))
				}
				c.FlushHeld(ctx, true)
				out, _ := st.GetDeployment(ctx, "acme", d.ID)
				return out, answers, heldOnce
			}
			atOnce, wantAnswers, _ := run(0)
			held, answers, heldOnce := run(time.Hour)
			if fmt.Sprint(answers) != fmt.Sprint(wantAnswers) {
				t.Fatalf("answers: held %v, at once %v", answers, wantAnswers)
			}
			if err := sameWalk(held, atOnce); err != nil {
				t.Fatal(err)
			}
			if len(held.History) != len(atOnce.History) || held.DeviceEvents != atOnce.DeviceEvents {
				t.Fatalf("history %d entries / %d device events, at once %d / %d", len(held.History), held.DeviceEvents, len(atOnce.History), atOnce.DeviceEvents)
			}
			if name == "success" && fmt.Sprint(heldOnce) != "[true true true false]" {
				t.Fatalf("download, downloaded and proceeding of a fetched deployment should wait for closed: held %v", heldOnce)
			}
		})
	}
}

// TestHeldFeedbackIsAnnouncedOnceWritten: watchers hear of held steps when
// they are written, and a step held against a deployment that ended
// elsewhere meanwhile is dropped, as it would have been refused late.
func TestHeldFeedbackIsAnnouncedOnceWritten(t *testing.T) {
	ctx := context.Background()
	c, st, rec, _ := fakeCore(t)
	c.Config.HoldFeedback = time.Hour
	id, d := fetchedDeployment(t, c)
	for _, f := range []flotilla.Feedback{fb("download", ""), fb("downloaded", ""), fb("proceeding", "")} {
		if _, err := c.DeploymentFeedback(ctx, id, d.ID, f); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(rec.deploymentStates("pull-1")); got != "[pending]" {
		t.Fatalf("announced before the flush: %s", got)
	}
	c.FlushHeld(ctx, false)
	if got, _ := st.GetDeployment(ctx, "acme", d.ID); got.State != flotilla.StatePending {
		t.Fatalf("flushed before its time: %s", got.State)
	}
	c.FlushHeld(ctx, true)
	got, _ := st.GetDeployment(ctx, "acme", d.ID)
	if got.State != flotilla.StateInstalling || fmt.Sprint(rec.deploymentStates("pull-1")) != "[pending installing]" {
		t.Fatalf("after the flush: %s, announced %v", got.State, rec.deploymentStates("pull-1"))
	}

	// Another replica (a second core over the same store) ends the
	// deployment while this one holds a step.
	c.DeploymentFeedback(ctx, id, d.ID, fb("proceeding", "", "still installing"))
	c.DeploymentFeedback(ctx, id, d.ID, fb("proceeding", "", "almost"))
	other := core.New(st, nil, nil, nil, core.Config{})
	if _, err := other.DeploymentFeedback(ctx, id, d.ID, fb("closed", "success")); err != nil {
		t.Fatal(err)
	}
	c.FlushHeld(ctx, true)
	got, _ = st.GetDeployment(ctx, "acme", d.ID)
	if got.State != flotilla.StateSucceeded || got.History[len(got.History)-1].State != flotilla.StateSucceeded {
		t.Fatalf("a late held step changed an ended deployment: %s, history %v", got.State, got.History)
	}
	if _, err := c.DeploymentFeedback(ctx, id, d.ID, fb("proceeding", "")); !flotilla.IsCode(err, flotilla.EGone) {
		t.Fatalf("feedback after the end: %v, want EGone", err)
	}
}

// TestAFlushOpensTheNextWindow: a device slower than the hold has its held
// steps written by the flusher, and its next step is held again, not
// written alone.
func TestAFlushOpensTheNextWindow(t *testing.T) {
	ctx := context.Background()
	c, st, _, _ := fakeCore(t)
	c.Config.HoldFeedback = time.Millisecond
	id, d := fetchedDeployment(t, c)
	if _, err := c.DeploymentFeedback(ctx, id, d.ID, fb("download", "")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the hold: the flusher writes the step
	c.FlushHeld(ctx, false)
	if got, _ := st.GetDeployment(ctx, "acme", d.ID); got.State != flotilla.StateDownloading {
		t.Fatalf("after the flush: %s, want downloading", got.State)
	}
	if _, err := c.DeploymentFeedback(ctx, id, d.ID, fb("downloaded", "")); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetDeployment(ctx, "acme", d.ID); got.State != flotilla.StateDownloading {
		t.Fatalf("the step after the flush was written alone (%s), not held", got.State)
	}
	c.FlushHeld(ctx, true)
	if got, _ := st.GetDeployment(ctx, "acme", d.ID); got.State != flotilla.StateDownloaded {
		t.Fatalf("after the last flush: %s, want downloaded", got.State)
	}
}

// fetchedDeployment assigns pull-1 a deployment, which it fetches.
func fetchedDeployment(t *testing.T, c *core.Core) (core.DeviceIdentity, flotilla.Deployment) {
	t.Helper()
	ctx := context.Background()
	d, err := c.AssignDeployment(ctx, admin(), core.AssignRequest{Tenant: "acme", DeviceID: "pull-1", ArtifactName: "fw", ArtifactVersion: "2.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	id := core.DeviceIdentity{Tenant: "acme", DeviceID: "pull-1"}
	if _, _, err := c.DeploymentBase(ctx, id, d.ID); err != nil {
		t.Fatal(err)
	}
	return id, d
}
