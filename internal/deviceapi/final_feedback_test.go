package deviceapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
)

// TestFinalFeedbackKeepsTheAnswerCached: the end of a device's only
// deployment rewrites its cached answer — a success becomes the installed
// base and asks for the attributes, a failure only drops the link —
// without reading the device again, and the rewrite is what a read
// renders; with another deployment waiting, the next poll reads it.
func TestFinalFeedbackKeepsTheAnswerCached(t *testing.T) {
	s, d, _ := setup(t)
	// fresh renders the device's answer from the database: the label's
	// change drops the cached one and changes nothing the device is told.
	relabel := 0
	fresh := func() (string, string) {
		relabel++
		s.API.Must(200, "PATCH", "/api/v1/devices/dev-1", map[string]any{"labels": map[string]string{"app": "kiosk", "n": fmt.Sprint(relabel)}}, nil)
		resp, b := d.req("GET", "", nil)
		return string(b), resp.Header.Get("ETag")
	}
	// run takes a deployment to its end the way a device does, and returns
	// the poll's answer after it and how many reads that took.
	run := func(id int64, finished string) (string, string, int) {
		t.Helper()
		if p, _ := d.poll(); p.Links.DeploymentBase == nil || !strings.Contains(p.Links.DeploymentBase.Href, fmt.Sprintf("/deploymentBase/%d?", id)) {
			t.Fatalf("poll = %+v, want deployment %d", p.Links, id)
		}
		d.req("GET", fmt.Sprintf("/deploymentBase/%d", id), nil)
		d.feedback(id, "proceeding", "none")
		reads := pollReads(t, s)
		if code, b := d.feedback(id, "closed", finished); code != 200 {
			t.Fatalf("final feedback = %d %s", code, b)
		}
		resp, b := d.req("GET", "", nil)
		return string(b), resp.Header.Get("ETag"), pollReads(t, s) - reads
	}

	d.req("PUT", "/configData", `{"data":{"hw":"rev1"}}`) // a new device is asked for them
	first := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	body, etag, reads := run(first.ID, "success")
	if reads != 0 {
		t.Fatalf("the poll after the success read the device %d times", reads)
	}
	if strings.Contains(body, "deploymentBase") || !strings.Contains(body, fmt.Sprintf("/installedBase/%d\"", first.ID)) || !strings.Contains(body, "/configData\"") {
		t.Fatalf("answer after the success = %s, want its installed base and a request for the attributes", body)
	}
	if fb, fe := fresh(); fb != body || fe != etag {
		t.Fatalf("rewritten answer %s (%s), read %s (%s)", body, etag, fb, fe)
	}
	d.req("PUT", "/configData", `{"data":{"hw":"rev2"}}`)

	second := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	body, etag, reads = run(second.ID, "failure")
	if reads != 0 {
		t.Fatalf("the poll after the failure read the device %d times", reads)
	}
	if strings.Contains(body, "deploymentBase") || strings.Contains(body, "configData") || !strings.Contains(body, fmt.Sprintf("/installedBase/%d\"", first.ID)) {
		t.Fatalf("answer after the failure = %s, want the first installed base alone", body)
	}
	if fb, fe := fresh(); fb != body || fe != etag {
		t.Fatalf("rewritten answer %s (%s), read %s (%s)", body, etag, fb, fe)
	}

	// A fetched deployment superseded: its cancel comes first, the new
	// one waits behind it and is the answer once the cancel is confirmed.
	third := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	d.poll()
	d.req("GET", fmt.Sprintf("/deploymentBase/%d", third.ID), nil)
	fourth := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	if p, _ := d.poll(); p.Links.CancelAction == nil {
		t.Fatalf("poll after the superseding assignment = %+v, want the cancel", p.Links)
	}
	if resp, b := d.req("POST", fmt.Sprintf("/cancelAction/%d/feedback", third.ID), `{"status":{"execution":"closed","result":{"finished":"success"}}}`); resp.StatusCode != 200 {
		t.Fatalf("cancel feedback = %d %s", resp.StatusCode, b)
	}
	p, _ := d.poll()
	if p.Links.CancelAction != nil || p.Links.DeploymentBase == nil || !strings.Contains(p.Links.DeploymentBase.Href, fmt.Sprintf("/deploymentBase/%d?", fourth.ID)) {
		t.Fatalf("poll after the confirmed cancel = %+v, want deployment %d", p.Links, fourth.ID)
	}
}

// TestWorkingFeedbackKeepsTheAnswer: written at once (no hold), the steps
// of an update under way leave the device's cached answer as it was —
// they change nothing it is told — while a cancel request changes it.
func TestWorkingFeedbackKeepsTheAnswer(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.FeedbackHold = -1 }))
	tok := s.API.CreateDevice("dev-1", nil)
	s.API.Upload("kiosk-fw", "2.0.0", []byte("firmware 2.0.0 bytes"), "")
	d := device{t: t, base: s.URL + "/default/controller/v1/dev-1", auth: "TargetToken " + tok}
	dep := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	_, resp := d.poll()
	etag, reads := resp.Header.Get("ETag"), pollReads(t, s)
	d.req("GET", fmt.Sprintf("/deploymentBase/%d", dep.ID), nil)
	for _, exec := range []string{"download", "downloaded", "proceeding"} {
		if code, b := d.feedback(dep.ID, exec, "none"); code != 200 {
			t.Fatalf("%s feedback = %d %s", exec, code, b)
		}
		if r, _ := d.req("GET", "", nil, "If-None-Match", etag); r.StatusCode != 304 {
			t.Fatalf("poll after %s = %d, want 304", exec, r.StatusCode)
		}
	}
	if st := s.API.Deployment("dev-1", dep.ID).State; st != "installing" {
		t.Fatalf("state = %s, want installing (written, not held)", st)
	}
	if n := pollReads(t, s); n != reads {
		t.Fatalf("polls after working feedback read the device %d times", n-reads)
	}
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/dev-1/deployments/%d/cancel", dep.ID), nil, nil)
	if p, _ := d.poll(); p.Links.CancelAction == nil {
		t.Fatalf("poll after the cancel request = %+v, want the cancel", p.Links)
	}
}
