package deviceapi_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/servertest"
)

var devicePollReads = regexp.MustCompile(`flotilla_store_operation_duration_seconds_count\{op="device poll"\} (\d+)`)

// pollReads is how many polls the server answered from the database.
func pollReads(t *testing.T, s *servertest.Server) int {
	t.Helper()
	m := devicePollReads.FindSubmatch(s.API.Must(200, "GET", "/metrics", nil, nil))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestAttributeUploadKeepsTheAnswerCached: the upload the server asked for
// takes the configData link out of the device's cached answer, which keeps
// its deployment, without reading the device again; an upload nobody asked
// for leaves the answer as it was.
func TestAttributeUploadKeepsTheAnswerCached(t *testing.T) {
	s, d, _ := setup(t)
	s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	p, resp := d.poll()
	if p.Links.ConfigData == nil || p.Links.DeploymentBase == nil {
		t.Fatalf("first poll = %+v, want the deployment and a configData link", p.Links)
	}
	asked := resp.Header.Get("ETag")
	reads := pollReads(t, s)

	if resp, b := d.req("PUT", "/configData", `{"data":{"hw":"rev2"}}`); resp.StatusCode != 200 {
		t.Fatalf("configData = %d %s", resp.StatusCode, b)
	}
	p, resp = d.poll()
	if p.Links.ConfigData != nil || p.Links.DeploymentBase == nil || resp.Header.Get("ETag") == asked {
		t.Fatalf("poll after the upload = %+v (ETag %s, was %s), want the deployment alone", p.Links, resp.Header.Get("ETag"), asked)
	}
	if n := pollReads(t, s); n != reads {
		t.Fatalf("the poll after the upload read the device (%d reads, was %d)", n, reads)
	}
	if r, _ := d.req("GET", "", nil, "If-None-Match", resp.Header.Get("ETag")); r.StatusCode != 304 {
		t.Fatalf("the new answer's ETag = %d, want 304", r.StatusCode)
	}

	// Unasked, with new attributes: written, the answer unchanged.
	answer := resp.Header.Get("ETag")
	if resp, b := d.req("PUT", "/configData", `{"data":{"hw":"rev3"}}`); resp.StatusCode != 200 {
		t.Fatalf("configData = %d %s", resp.StatusCode, b)
	}
	p, resp = d.poll()
	if p.Links.ConfigData != nil || p.Links.DeploymentBase == nil || resp.Header.Get("ETag") != answer {
		t.Fatalf("poll after an unasked upload = %+v (ETag %s, was %s)", p.Links, resp.Header.Get("ETag"), answer)
	}
	var dev struct{ Attributes map[string]string }
	s.API.Must(200, "GET", "/api/v1/devices/dev-1", nil, &dev)
	if dev.Attributes["hw"] != "rev3" {
		t.Fatalf("attributes = %v", dev.Attributes)
	}
	if n := pollReads(t, s); n != reads {
		t.Fatalf("polls after uploads read the device (%d reads, was %d)", n, reads)
	}
}
