package flotilla_test

import (
	"testing"

	"github.com/flotilla-ota/flotilla"
)

func TestNextState(t *testing.T) {
	fb := func(exec, fin string) flotilla.Feedback { return flotilla.Feedback{Execution: exec, Finished: fin} }
	tests := []struct {
		cur  flotilla.DeploymentState
		typ  flotilla.DeploymentType
		f    flotilla.Feedback
		want flotilla.DeploymentState
		code string
	}{
		{flotilla.StatePending, flotilla.TypeForced, fb("download", ""), flotilla.StateDownloading, ""},
		{flotilla.StatePending, flotilla.TypeForced, fb("proceeding", "none"), flotilla.StateDownloading, ""},
		{flotilla.StateDownloading, flotilla.TypeForced, fb("proceeding", "none"), flotilla.StateDownloading, ""},
		{flotilla.StateDownloading, flotilla.TypeForced, fb("downloaded", "none"), flotilla.StateDownloaded, ""},
		{flotilla.StateDownloading, flotilla.TypeDownloadOnly, fb("downloaded", "none"), flotilla.StateSucceeded, ""},
		{flotilla.StateDownloaded, flotilla.TypeForced, fb("proceeding", "none"), flotilla.StateInstalling, ""},
		{flotilla.StateInstalling, flotilla.TypeForced, fb("closed", "success"), flotilla.StateSucceeded, ""},
		{flotilla.StateInstalling, flotilla.TypeForced, fb("closed", "failure"), flotilla.StateFailed, ""},
		{flotilla.StatePending, flotilla.TypeForced, fb("closed", "none"), flotilla.StateSucceeded, ""},
		{flotilla.StatePending, flotilla.TypeSoft, fb("rejected", "none"), flotilla.StateRejected, ""},
		{flotilla.StateDownloading, flotilla.TypeForced, fb("canceled", "none"), flotilla.StateCanceled, ""},
		{flotilla.StateDownloading, flotilla.TypeForced, fb("scheduled", "none"), flotilla.StateDownloading, ""},
		{flotilla.StateCancelRequested, flotilla.TypeForced, fb("closed", "success"), flotilla.StateSucceeded, ""},
		{flotilla.StateCancelRequested, flotilla.TypeForced, fb("download", ""), flotilla.StateCancelRequested, ""},
		{flotilla.StateSucceeded, flotilla.TypeForced, fb("closed", "success"), flotilla.StateSucceeded, flotilla.EGone},
		{flotilla.StateCanceled, flotilla.TypeForced, fb("proceeding", ""), flotilla.StateCanceled, flotilla.EGone},
		{flotilla.StateScheduled, flotilla.TypeForced, fb("proceeding", ""), flotilla.StateScheduled, flotilla.EGone},
	}
	for _, tt := range tests {
		got, err := flotilla.NextState(tt.cur, tt.typ, tt.f)
		if got != tt.want || flotilla.ErrorCode(err) != tt.code {
			t.Errorf("NextState(%s, %s, %s/%s) = %s, %v; want %s, code %q", tt.cur, tt.typ, tt.f.Execution, tt.f.Finished, got, err, tt.want, tt.code)
		}
	}
}

func TestNextCancelState(t *testing.T) {
	tests := []struct {
		cur, prev flotilla.DeploymentState
		exec, fin string
		want      flotilla.DeploymentState
		code      string
	}{
		{flotilla.StateCancelRequested, flotilla.StateDownloading, "closed", "success", flotilla.StateCanceled, ""},
		{flotilla.StateCancelRequested, flotilla.StateDownloading, "canceled", "", flotilla.StateCanceled, ""},
		{flotilla.StateCancelRequested, flotilla.StateInstalling, "rejected", "none", flotilla.StateInstalling, ""},
		{flotilla.StateCancelRequested, flotilla.StateInstalling, "closed", "failure", flotilla.StateInstalling, ""},
		{flotilla.StateCancelRequested, "", "rejected", "", flotilla.StatePending, ""},
		{flotilla.StateCancelRequested, flotilla.StateDownloading, "proceeding", "", flotilla.StateCancelRequested, ""},
		{flotilla.StateInstalling, "", "closed", "success", flotilla.StateInstalling, flotilla.EGone},
	}
	for _, tt := range tests {
		got, err := flotilla.NextCancelState(tt.cur, tt.prev, flotilla.Feedback{Execution: tt.exec, Finished: tt.fin})
		if got != tt.want || flotilla.ErrorCode(err) != tt.code {
			t.Errorf("NextCancelState(%s, %s, %s/%s) = %s, %v; want %s %q", tt.cur, tt.prev, tt.exec, tt.fin, got, err, tt.want, tt.code)
		}
	}
}

func TestValidateFeedback(t *testing.T) {
	if err := flotilla.ValidateFeedback(flotilla.Feedback{Execution: "closed", Finished: "success"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []flotilla.Feedback{{Execution: "done"}, {Execution: "closed", Finished: "ok"}, {Execution: "proceeding", Cnt: -1}} {
		if err := flotilla.ValidateFeedback(f); !flotilla.IsCode(err, flotilla.EInvalid) {
			t.Errorf("ValidateFeedback(%+v) = %v", f, err)
		}
	}
}

func TestReportedHealth(t *testing.T) {
	if h := flotilla.ReportedHealth([]string{"installed", "health: ok"}); h == nil || !*h {
		t.Fatalf("health ok = %v", h)
	}
	if h := flotilla.ReportedHealth([]string{"health: failed: exit 1"}); h == nil || *h {
		t.Fatalf("health failed = %v", h)
	}
	if h := flotilla.ReportedHealth([]string{"installed"}); h != nil {
		t.Fatalf("no health = %v", h)
	}
}
