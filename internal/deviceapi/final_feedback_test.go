package deviceapi_test

import (
	"fmt"
	"strings"
	"testing"
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
