package flotilla_test

import (
	"slices"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func TestApplyFeedback(t *testing.T) {
	fb := func(exec, fin string, details ...string) flotilla.Feedback {
		return flotilla.Feedback{Execution: exec, Finished: fin, Details: details}
	}
	tests := []struct {
		name      string
		cur, prev flotilla.DeploymentState
		cancel    bool
		f         flotilla.Feedback
		want      flotilla.DeploymentState
		wantPrev  flotilla.DeploymentState
		finished  bool
		installed bool
		code      string
	}{
		{name: "download starts", cur: flotilla.StatePending, f: fb("download", ""), want: flotilla.StateDownloading},
		{name: "install succeeds", cur: flotilla.StateInstalling, f: fb("closed", "success", "done"), want: flotilla.StateSucceeded, finished: true, installed: true},
		{name: "install fails", cur: flotilla.StateInstalling, f: fb("closed", "failure"), want: flotilla.StateFailed, finished: true},
		{name: "device rejects", cur: flotilla.StatePending, f: fb("rejected", ""), want: flotilla.StateRejected, finished: true},
		{name: "cancel confirmed", cur: flotilla.StateCancelRequested, prev: flotilla.StateDownloading, cancel: true, f: fb("canceled", ""), want: flotilla.StateCanceled, wantPrev: flotilla.StateDownloading, finished: true},
		{name: "cancel rejected restores", cur: flotilla.StateCancelRequested, prev: flotilla.StateInstalling, cancel: true, f: fb("rejected", ""), want: flotilla.StateInstalling},
		{name: "cancel rejected without prev", cur: flotilla.StateCancelRequested, cancel: true, f: fb("rejected", ""), want: flotilla.StatePending},
		{name: "ended takes no feedback", cur: flotilla.StateSucceeded, f: fb("closed", "success"), code: flotilla.EGone},
		{name: "no cancel pending", cur: flotilla.StateDownloading, cancel: true, f: fb("canceled", ""), code: flotilla.EGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := flotilla.Deployment{ID: 7, State: tt.cur, PrevState: tt.prev, Type: flotilla.TypeForced, ArtifactVersion: "2.0.0"}
			ch, err := flotilla.ApplyFeedback(d, tt.f, tt.cancel, t0)
			if flotilla.ErrorCode(err) != tt.code {
				t.Fatalf("error %v, want code %q", err, tt.code)
			}
			if tt.code != "" {
				return
			}
			got := ch.Deployment
			if got.State != tt.want || got.PrevState != tt.wantPrev {
				t.Fatalf("state %s (prev %q), want %s (prev %q)", got.State, got.PrevState, tt.want, tt.wantPrev)
			}
			if (got.FinishedAt != nil) != tt.finished || ch.Installed != tt.installed {
				t.Fatalf("finished %v installed %v, want %v %v", got.FinishedAt, ch.Installed, tt.finished, tt.installed)
			}
			if tt.installed && ch.DeviceVersion != "2.0.0" {
				t.Fatalf("device version %q", ch.DeviceVersion)
			}
			if ch.Event == nil || ch.Event.State != tt.want || ch.Event.Source != flotilla.SourceDevice || !ch.Event.At.Equal(t0) {
				t.Fatalf("event %+v", ch.Event)
			}
			if len(tt.f.Details) > 0 && got.Message != tt.f.Details[len(tt.f.Details)-1] {
				t.Fatalf("message %q", got.Message)
			}
		})
	}
}

func TestRequestCancel(t *testing.T) {
	tests := []struct {
		name      string
		cur       flotilla.DeploymentState
		retrieved bool
		want      flotilla.DeploymentState
		wantPrev  flotilla.DeploymentState
		event     bool
		code      string
	}{
		{name: "scheduled ends at once", cur: flotilla.StateScheduled, want: flotilla.StateCanceled, event: true},
		{name: "pending never fetched ends at once", cur: flotilla.StatePending, want: flotilla.StateCanceled, event: true},
		{name: "pending fetched asks the device", cur: flotilla.StatePending, retrieved: true, want: flotilla.StateCancelRequested, wantPrev: flotilla.StatePending, event: true},
		{name: "downloading asks the device", cur: flotilla.StateDownloading, retrieved: true, want: flotilla.StateCancelRequested, wantPrev: flotilla.StateDownloading, event: true},
		{name: "pending cancel is left alone", cur: flotilla.StateCancelRequested, want: flotilla.StateCancelRequested},
		{name: "ended is a conflict", cur: flotilla.StateFailed, code: flotilla.EConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := flotilla.Deployment{ID: 1, State: tt.cur}
			if tt.retrieved {
				d.RetrievedAt = &t0
			}
			ch, err := flotilla.RequestCancel(d, t0, "why")
			if flotilla.ErrorCode(err) != tt.code {
				t.Fatalf("error %v, want %q", err, tt.code)
			}
			if tt.code != "" {
				return
			}
			if ch.Deployment.State != tt.want || ch.Deployment.PrevState != tt.wantPrev || (ch.Event != nil) != tt.event {
				t.Fatalf("got %s prev %q event %v", ch.Deployment.State, ch.Deployment.PrevState, ch.Event)
			}
			if tt.want == flotilla.StateCanceled && ch.Deployment.FinishedAt == nil {
				t.Fatal("canceled without finished_at")
			}
			if got := flotilla.CancelOutcome(tt.cur, tt.retrieved); tt.event && got != tt.want {
				t.Fatalf("CancelOutcome = %s, RequestCancel = %s: the bulk and single paths disagree", got, tt.want)
			}
		})
	}
}

func TestForceQuit(t *testing.T) {
	for _, tt := range []struct {
		cur  flotilla.DeploymentState
		code string
	}{
		{flotilla.StateCancelRequested, ""},
		{flotilla.StateDownloading, flotilla.EConflict},
		{flotilla.StatePending, flotilla.EConflict},
		{flotilla.StateSucceeded, flotilla.EConflict},
		{flotilla.StateCanceled, flotilla.EConflict},
	} {
		t.Run(string(tt.cur), func(t *testing.T) {
			ch, err := flotilla.ForceQuit(flotilla.Deployment{ID: 1, State: tt.cur, PrevState: flotilla.StateDownloading}, t0)
			if flotilla.ErrorCode(err) != tt.code {
				t.Fatalf("error %v, want %q", err, tt.code)
			}
			if tt.code == "" && (ch.Deployment.State != flotilla.StateCanceled || ch.Deployment.FinishedAt == nil || ch.Event == nil || ch.Deployment.PrevState != "") {
				t.Fatalf("force quit: %+v", ch)
			}
		})
	}
}

func TestFailAndProgress(t *testing.T) {
	d := flotilla.Deployment{ID: 3, State: flotilla.StateCancelRequested, PrevState: flotilla.StateDownloading}
	ch, err := flotilla.Fail(d, t0, "node unreachable")
	if err != nil || ch.Deployment.State != flotilla.StateFailed || ch.Deployment.PrevState != "" || ch.Deployment.FinishedAt == nil ||
		ch.Event.Source != flotilla.SourceServer || ch.Deployment.Message != "node unreachable" {
		t.Fatalf("Fail = %+v, %v", ch, err)
	}
	if _, err := flotilla.Fail(ch.Deployment, t0, "again"); !flotilla.IsCode(err, flotilla.EGone) {
		t.Fatalf("Fail of an ended deployment = %v", err)
	}
	p, err := flotilla.ApplyProgress(flotilla.Deployment{State: flotilla.StateDownloading}, 5, 10, t0)
	if err != nil || p.Event != nil || p.Deployment.ProgressCnt != 5 || p.Deployment.State != flotilla.StateDownloading {
		t.Fatalf("ApplyProgress = %+v, %v", p, err)
	}
	if _, err := flotilla.ApplyProgress(flotilla.Deployment{State: flotilla.StateCanceled}, 5, 10, t0); !flotilla.IsCode(err, flotilla.EGone) {
		t.Fatalf("progress after the end = %v", err)
	}
	r := flotilla.Retrieve(flotilla.Deployment{State: flotilla.StatePending}, t0)
	if r.Deployment.RetrievedAt == nil || r.Event == nil || flotilla.Retrieve(r.Deployment, t0.Add(time.Hour)).Event != nil {
		t.Fatalf("Retrieve = %+v", r)
	}
}

func TestMoves(t *testing.T) {
	for _, m := range []flotilla.Move{flotilla.MoveRelease, flotilla.MoveSkip, flotilla.MoveTimeOut} {
		if len(m.From()) == 0 || m.To() == "" {
			t.Fatalf("move %s has no rule", m)
		}
		if slices.Contains(m.From(), m.To()) {
			t.Fatalf("move %s leads from %s to itself", m, m.To())
		}
		for _, s := range m.From() {
			if s.Terminal() {
				t.Fatalf("move %s applies to ended state %s", m, s)
			}
		}
	}
	if !flotilla.MoveTimeOut.Ends() || flotilla.MoveRelease.Ends() {
		t.Fatal("Ends")
	}
}

func TestApplySteps(t *testing.T) {
	fb := func(exec, fin, detail string) flotilla.Feedback {
		return flotilla.Feedback{Execution: exec, Finished: fin, Details: []string{detail}}
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name      string
		cur       flotilla.DeploymentState
		steps     []flotilla.Step
		want      flotilla.DeploymentState
		history   []flotilla.DeploymentState // Earlier, then Event
		installed bool
		code      string
	}{
		{name: "one step is ApplyFeedback", cur: flotilla.StateDownloading, steps: []flotilla.Step{{fb("downloaded", "", "verifying"), at(1)}},
			want: flotilla.StateDownloaded, history: []flotilla.DeploymentState{flotilla.StateDownloaded}},
		{name: "verify, apply and succeed in one write", cur: flotilla.StateDownloading, steps: []flotilla.Step{
			{fb("downloaded", "", "verifying"), at(1)}, {fb("proceeding", "", "applying"), at(2)}, {fb("closed", "success", "runs 2.0.0"), at(3)}},
			want: flotilla.StateSucceeded, installed: true,
			history: []flotilla.DeploymentState{flotilla.StateDownloaded, flotilla.StateInstalling, flotilla.StateSucceeded}},
		{name: "an install that failed", cur: flotilla.StateDownloading, steps: []flotilla.Step{
			{fb("downloaded", "", "verifying"), at(1)}, {fb("closed", "failure", "bad image"), at(2)}},
			want: flotilla.StateFailed, history: []flotilla.DeploymentState{flotilla.StateDownloaded, flotilla.StateFailed}},
		{name: "a step the state does not take", cur: flotilla.StateSucceeded, steps: []flotilla.Step{{fb("downloaded", "", "late"), at(1)}}, code: flotilla.EGone},
		{name: "nothing to apply", cur: flotilla.StateDownloading, code: flotilla.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := flotilla.Deployment{ID: 7, State: tt.cur, Type: flotilla.TypeForced, ArtifactVersion: "2.0.0"}
			ch, err := flotilla.ApplySteps(d, tt.steps)
			if tt.code != "" {
				if !flotilla.IsCode(err, tt.code) {
					t.Fatalf("err = %v, want %s", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []flotilla.DeploymentState
			for _, e := range append(slices.Clone(ch.Earlier), *ch.Event) {
				got = append(got, e.State)
			}
			if ch.Deployment.State != tt.want || !slices.Equal(got, tt.history) || ch.Installed != tt.installed {
				t.Fatalf("state %s, history %v, installed %v; want %s, %v, %v", ch.Deployment.State, got, ch.Installed, tt.want, tt.history, tt.installed)
			}
			last := tt.steps[len(tt.steps)-1]
			if !ch.Deployment.UpdatedAt.Equal(last.At) || !ch.Event.At.Equal(last.At) || (len(ch.Earlier) > 0 && !ch.Earlier[0].At.Equal(tt.steps[0].At)) {
				t.Fatalf("times: updated %v, event %v, earlier %v", ch.Deployment.UpdatedAt, ch.Event.At, ch.Earlier)
			}
		})
	}
}
