package deviceapi_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestColdPollChecksTheTokenItReads: a poll with neither a cached
// authentication nor a cached answer reads the device's token with its
// answer (core.AuthenticatePoll). The token is still checked against the
// device the URL names, and a rotated one stops working.
func TestColdPollChecksTheTokenItReads(t *testing.T) {
	s, d, _ := setup(t)
	other := device{t: t, base: s.URL + "/default/controller/v1/dev-2", auth: "TargetToken " + s.API.CreateDevice("dev-2", nil)}
	dep := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)

	// dev-1's token for dev-2, and for a device that does not exist.
	for _, path := range []string{"dev-2", "ghost"} {
		stolen := device{t: t, base: s.URL + "/default/controller/v1/" + path, auth: d.auth}
		if resp, b := stolen.req("GET", "", nil); resp.StatusCode != 401 {
			t.Fatalf("dev-1's token polling as %s = %d %s, want 401", path, resp.StatusCode, b)
		}
	}
	// The first poll of each is cold, and answered from the read that
	// checked its token.
	p, _ := d.poll()
	if p.Links.DeploymentBase == nil || !strings.Contains(p.Links.DeploymentBase.Href, "/deploymentBase/") || p.Links.ConfigData == nil {
		t.Fatalf("dev-1's cold poll = %+v, want its deployment and a configData link", p.Links)
	}
	if p, _ := other.poll(); p.Links.DeploymentBase != nil {
		t.Fatalf("dev-2's cold poll = %+v, want no deployment", p.Links)
	}

	// A rotated token: the old one is refused once the answer is cold
	// again (the cancel invalidates it), the new one works.
	var rotated struct{ Token string }
	s.API.Must(200, "POST", "/api/v1/devices/dev-1/token", nil, &rotated)
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/dev-1/deployments/%d/cancel", dep.ID), nil, nil)
	if resp, b := d.req("GET", "", nil); resp.StatusCode != 401 {
		t.Fatalf("poll with the rotated-out token = %d %s, want 401", resp.StatusCode, b)
	}
	d.auth = "TargetToken " + rotated.Token
	if p, _ := d.poll(); p.Links.DeploymentBase != nil || p.Links.CancelAction != nil {
		t.Fatalf("poll with the new token = %+v, want the deployment gone (canceled before it was fetched)", p.Links)
	}
}

// TestColdGatewayPollSeesItsDeployment: a gateway's first poll for a
// known device reads the device's answer while checking that it exists,
// and a gateway's poll for an unknown one still registers it.
func TestColdGatewayPollSeesItsDeployment(t *testing.T) {
	s, _, _ := setup(t)
	s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	gw := "GatewayToken " + s.API.GatewayToken()
	d := device{t: t, base: s.URL + "/default/controller/v1/dev-1", auth: gw}
	if p, _ := d.poll(); p.Links.DeploymentBase == nil {
		t.Fatalf("gateway's cold poll for dev-1 = %+v, want its deployment", p.Links)
	}
	n := device{t: t, base: s.URL + "/default/controller/v1/dev-new", auth: gw}
	if p, _ := n.poll(); p.Links.DeploymentBase != nil || p.Links.ConfigData == nil {
		t.Fatalf("gateway's first poll for a new device = %+v, want no deployment and a configData link", p.Links)
	}
	s.API.Must(200, "GET", "/api/v1/devices/dev-new", nil, nil)
}
