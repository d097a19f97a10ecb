package deviceapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
)

// TestWaveStartKeepsTheAnswerCached: a rollout's wave releasing a device's
// deployment rewrites the device's cached answer to name it, without
// reading the device. The rewrite is what a read renders, it lasts until
// the deployment's force time, and the deployment's end rewrites it again.
func TestWaveStartKeepsTheAnswerCached(t *testing.T) {
	s, one, _ := setup(t)
	devs := []device{one}
	for _, id := range []string{"dev-2", "dev-3"} {
		tok := s.API.CreateDevice(id, map[string]string{"app": "kiosk"})
		devs = append(devs, device{t: t, base: s.URL + "/default/controller/v1/" + id, auth: "TargetToken " + tok})
	}
	for _, d := range devs {
		d.req("PUT", "/configData", `{"data":{"hw":"rev1"}}`)
		if p, _ := d.poll(); p.Links.DeploymentBase != nil {
			t.Fatalf("first poll = %+v, want idle", p.Links)
		}
	}
	reads := pollReads(t, s)

	forceAt := s.Clock().Now().Add(time.Hour)
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "spring", "artifact": map[string]string{"name": "kiosk-fw", "version": "2.0.0"},
		"selector": "app=kiosk", "type": "timeforced", "force_at": forceAt, "start": true}, nil)
	links := make([]*ddi.Link, len(devs))
	deadline := time.Now().Add(10 * time.Second)
	for i, d := range devs {
		for links[i] == nil {
			if time.Now().After(deadline) {
				t.Fatalf("the rollout's deployment never reached %s's poll", d.base)
			}
			time.Sleep(10 * time.Millisecond)
			p, _ := d.poll()
			links[i] = p.Links.DeploymentBase
		}
	}
	if n := pollReads(t, s) - reads; n != 0 {
		t.Fatalf("the polls around the wave's start read the devices %d times", n)
	}

	// dev-1: the rewrite is what a read renders.
	resp, b := devs[0].req("GET", "", nil)
	body, etag := string(b), resp.Header.Get("ETag")
	s.API.Must(200, "PATCH", "/api/v1/devices/dev-1", map[string]any{"labels": map[string]string{"app": "kiosk", "n": "1"}}, nil)
	if resp, b = devs[0].req("GET", "", nil); string(b) != body || resp.Header.Get("ETag") != etag {
		t.Fatalf("rewritten answer %s (%s), read %s (%s)", body, etag, b, resp.Header.Get("ETag"))
	}

	// dev-3: its deployment's end rewrites the answer again.
	href := links[2].Href
	var id int64
	fmt.Sscan(href[strings.LastIndex(href, "/")+1:strings.IndexByte(href, '?')], &id)
	devs[2].req("GET", fmt.Sprintf("/deploymentBase/%d", id), nil)
	reads = pollReads(t, s)
	if code, b := devs[2].feedback(id, "closed", "success"); code != 200 {
		t.Fatalf("final feedback = %d %s", code, b)
	}
	if p, _ := devs[2].poll(); p.Links.DeploymentBase != nil || p.Links.InstalledBase == nil || !strings.HasSuffix(p.Links.InstalledBase.Href, fmt.Sprintf("/installedBase/%d", id)) {
		t.Fatalf("poll after the success = %+v, want the installed base", p.Links)
	}
	if n := pollReads(t, s) - reads; n != 0 {
		t.Fatalf("the poll after the end read the device %d times", n)
	}

	// dev-2: the rewrite lasts until the force time, as a read answer does.
	s.Clock().Set(forceAt.Add(time.Second))
	if p, _ := devs[1].poll(); p.Links.DeploymentBase == nil || p.Links.DeploymentBase.Href == links[1].Href {
		t.Fatalf("poll after the force time = %+v, want a new link (forced), not %s", p.Links, links[1].Href)
	}
}
