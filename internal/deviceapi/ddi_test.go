package deviceapi_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
	"github.com/flotilla-ota/flotilla/internal/events"
	"github.com/flotilla-ota/flotilla/internal/servertest"
)

// device is a raw DDI client.
type device struct {
	t    *testing.T
	base string
	auth string
}

func (d device) req(method, path string, body any, hdr ...string) (*http.Response, []byte) {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			r = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
	}
	req, _ := http.NewRequest(method, d.base+path, r)
	if d.auth != "" {
		req.Header.Set("Authorization", d.auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (d device) poll() (ddi.Poll, *http.Response) {
	d.t.Helper()
	resp, b := d.req("GET", "", nil)
	if resp.StatusCode != 200 {
		d.t.Fatalf("poll = %d %s", resp.StatusCode, b)
	}
	var p ddi.Poll
	if err := json.Unmarshal(b, &p); err != nil {
		d.t.Fatal(err)
	}
	return p, resp
}

func (d device) feedback(actionID int64, exec, finished string) (int, []byte) {
	resp, b := d.req("POST", fmt.Sprintf("/deploymentBase/%d/feedback", actionID),
		fmt.Sprintf(`{"id":"%d","time":"20260101T000000","status":{"execution":%q,"result":{"finished":%q,"progress":{"cnt":1,"of":2}},"details":["step"]}}`, actionID, exec, finished))
	return resp.StatusCode, b
}

func setup(t *testing.T) (*servertest.Server, device, servertest.Artifact) {
	s := servertest.Start(t)
	tok := s.API.CreateDevice("dev-1", map[string]string{"app": "kiosk"})
	art := s.API.Upload("kiosk-fw", "2.0.0", []byte("firmware 2.0.0 bytes"), "filename=kiosk.swu&type=swu")
	return s, device{t: t, base: s.URL + "/default/controller/v1/dev-1", auth: "TargetToken " + tok}, art
}

func TestPollShapesAndETag(t *testing.T) {
	s, d, art := setup(t)
	p, resp := d.poll()
	if p.Config.Polling.Sleep != "00:00:01" || p.Links.DeploymentBase != nil || p.Links.ConfigData == nil {
		t.Fatalf("idle poll = %+v", p)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/hal+json") {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	etag := resp.Header.Get("ETag")
	r2, _ := d.req("GET", "", nil, "If-None-Match", etag)
	if r2.StatusCode != 304 {
		t.Fatalf("If-None-Match = %d, want 304", r2.StatusCode)
	}

	dep := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	r3, _ := d.req("GET", "", nil, "If-None-Match", etag)
	if r3.StatusCode != 200 {
		t.Fatalf("poll after assignment = %d, want 200 (new ETag)", r3.StatusCode)
	}
	p, _ = d.poll()
	want := fmt.Sprintf("%s/deploymentBase/%d?c=", d.base, dep.ID)
	if p.Links.DeploymentBase == nil || !strings.HasPrefix(p.Links.DeploymentBase.Href, want) {
		t.Fatalf("deploymentBase link = %+v, want prefix %s", p.Links.DeploymentBase, want)
	}
	forcedHref := p.Links.DeploymentBase.Href

	// The raw deploymentBase carries hawkBit's exact field names, size as a
	// JSON integer, and all three hashes.
	resp, body := d.req("GET", strings.TrimPrefix(forcedHref, d.base)+"&actionHistory=5", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("deploymentBase = %d %s", resp.StatusCode, body)
	}
	var raw map[string]any
	json.Unmarshal(body, &raw)
	depl := raw["deployment"].(map[string]any)
	chunk := depl["chunks"].([]any)[0].(map[string]any)
	a := chunk["artifacts"].([]any)[0].(map[string]any)
	hashes := a["hashes"].(map[string]any)
	links := a["_links"].(map[string]any)
	if raw["id"] != fmt.Sprint(dep.ID) || depl["download"] != "forced" || depl["update"] != "forced" || chunk["version"] != "2.0.0" ||
		a["filename"] != "kiosk.swu" || hashes["sha1"] != art.SHA1 || hashes["md5"] != art.MD5 || hashes["sha256"] != art.SHA256 ||
		links["download-http"] == nil || links["md5sum-http"] == nil || raw["actionHistory"] == nil {
		t.Fatalf("deploymentBase body = %s", body)
	}
	if !bytes.Contains(body, []byte(fmt.Sprintf(`"size":%d`, art.Size))) {
		t.Fatalf("size is not a JSON integer: %s", body)
	}
	// Fetched again, the action's history is there when asked for: the
	// fetch reads the deployment without it otherwise.
	resp, body = d.req("GET", strings.TrimPrefix(forcedHref, d.base)+"&actionHistory=-1", nil)
	var again struct {
		ActionHistory *struct{ Messages []string } `json:"actionHistory"`
	}
	json.Unmarshal(body, &again)
	if resp.StatusCode != 200 || again.ActionHistory == nil || len(again.ActionHistory.Messages) == 0 ||
		!strings.Contains(strings.Join(again.ActionHistory.Messages, "\n"), "pending") {
		t.Fatalf("deploymentBase fetched again with actionHistory=-1 = %d %s", resp.StatusCode, body)
	}
	resp, body = d.req("GET", strings.TrimPrefix(forcedHref, d.base), nil)
	again.ActionHistory = nil
	if json.Unmarshal(body, &again); resp.StatusCode != 200 || again.ActionHistory != nil {
		t.Fatalf("deploymentBase without actionHistory = %d %s", resp.StatusCode, body)
	}
	if _, ok := depl["maintenanceWindow"]; ok {
		t.Fatal("maintenanceWindow present without a window")
	}

	// Making the action soft changes the link's hash.
	s.API.Assign("dev-1", "kiosk-fw", "2.0.0", map[string]any{"type": "soft"})
	code, _ := d.feedback(dep.ID, "proceeding", "none")
	if code != 200 {
		t.Fatalf("feedback to superseded running action = %d", code)
	}
}

func TestHashChangesWithType(t *testing.T) {
	s, d, _ := setup(t)
	forced := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	p, _ := d.poll()
	h1 := p.Links.DeploymentBase.Href
	// A timeforced action turns forced once its time passes.
	future := s.Srv.Core.Now().Add(time.Hour)
	tf := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", map[string]any{"type": "timeforced", "force_at": future})
	p, _ = d.poll()
	h2 := p.Links.DeploymentBase.Href
	_, b := d.req("GET", strings.TrimPrefix(h2, d.base), nil)
	var db ddi.DeploymentBase
	json.Unmarshal(b, &db)
	if db.ID != fmt.Sprint(tf.ID) || db.Deployment.Update != "attempt" {
		t.Fatalf("timeforced before its time: %s", b)
	}
	s.Clock().Advance(2 * time.Hour)
	p, _ = d.poll()
	h3 := p.Links.DeploymentBase.Href
	_, b = d.req("GET", strings.TrimPrefix(h3, d.base), nil)
	json.Unmarshal(b, &db)
	if db.Deployment.Update != "forced" || h3 == h2 {
		t.Fatalf("timeforced after its time: update %q, link %s (before %s)", db.Deployment.Update, h3, h2)
	}
	if h1 == h2 || forced.ID == tf.ID {
		t.Fatal("links of different actions are equal")
	}
}

func TestFeedbackLifecycle(t *testing.T) {
	s, d, _ := setup(t)
	dep := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	for _, step := range []struct{ exec, fin, state string }{
		{"download", "none", "downloading"},
		{"proceeding", "none", "downloading"},
		{"downloaded", "none", "downloaded"},
		{"proceeding", "none", "installing"},
		{"closed", "success", "succeeded"},
	} {
		if code, b := d.feedback(dep.ID, step.exec, step.fin); code != 200 {
			t.Fatalf("feedback %s = %d %s", step.exec, code, b)
		}
		if got := s.API.Deployment("dev-1", dep.ID).State; got != step.state {
			t.Fatalf("after %s: state %s, want %s", step.exec, got, step.state)
		}
	}
	// Finished actions take no more feedback and are no longer offered.
	if code, _ := d.feedback(dep.ID, "proceeding", "none"); code != 410 {
		t.Fatalf("feedback after closed = %d, want 410", code)
	}
	if resp, _ := d.req("GET", fmt.Sprintf("/deploymentBase/%d", dep.ID), nil); resp.StatusCode != 404 {
		t.Fatalf("deploymentBase of finished action = %d, want 404", resp.StatusCode)
	}
	p, _ := d.poll()
	if p.Links.DeploymentBase != nil || p.Links.InstalledBase == nil || p.Links.ConfigData == nil {
		t.Fatalf("poll after success = %+v", p.Links)
	}
	resp, b := d.req("GET", strings.TrimPrefix(p.Links.InstalledBase.Href, d.base), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"version":"2.0.0"`) {
		t.Fatalf("installedBase = %d %s", resp.StatusCode, b)
	}
	var dev struct{ Version string }
	s.API.Must(200, "GET", "/api/v1/devices/dev-1", nil, &dev)
	if dev.Version != "2.0.0" {
		t.Fatalf("device version = %q", dev.Version)
	}
	full := s.API.Deployment("dev-1", dep.ID)
	if len(full.History) < 6 || full.History[len(full.History)-1].Finished != "success" {
		t.Fatalf("history = %+v", full.History)
	}
	// Bad feedback is a 400 that says what is wrong.
	dep2 := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	for body, want := range map[string]string{
		`{"status":{"execution":"done"}}`:                                 "execution",
		`{"status":{"execution":"closed","result":{"finished":"great"}}}`: "finished",
		`{"nostatus":true}`:                                               "status",
		`{"status":`:                                                      "JSON",
	} {
		resp, b := d.req("POST", fmt.Sprintf("/deploymentBase/%d/feedback", dep2.ID), body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), want) {
			t.Errorf("feedback %s = %d %s, want 400 mentioning %s", body, resp.StatusCode, b, want)
		}
	}
}

func TestCancelThroughDDI(t *testing.T) {
	s, d, _ := setup(t)
	// Never fetched: canceled on the server at once.
	dep := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/dev-1/deployments/%d/cancel", dep.ID), nil, nil)
	if st := s.API.Deployment("dev-1", dep.ID).State; st != "canceled" {
		t.Fatalf("unfetched cancel = %s", st)
	}
	// Fetched and downloading: the device is asked.
	dep = s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	d.req("GET", fmt.Sprintf("/deploymentBase/%d", dep.ID), nil)
	d.feedback(dep.ID, "download", "none")
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/dev-1/deployments/%d/cancel", dep.ID), nil, nil)
	p, _ := d.poll()
	if p.Links.CancelAction == nil || p.Links.DeploymentBase != nil {
		t.Fatalf("poll during cancel = %+v", p.Links)
	}
	_, b := d.req("GET", strings.TrimPrefix(p.Links.CancelAction.Href, d.base), nil)
	var ca ddi.CancelAction
	json.Unmarshal(b, &ca)
	if ca.CancelAction.StopID != fmt.Sprint(dep.ID) {
		t.Fatalf("cancelAction = %s", b)
	}
	// The device rejects: the deployment resumes where it was.
	resp, _ := d.req("POST", fmt.Sprintf("/cancelAction/%d/feedback", dep.ID), `{"status":{"execution":"rejected","result":{"finished":"none"}}}`)
	if resp.StatusCode != 200 || s.API.Deployment("dev-1", dep.ID).State != "downloading" {
		t.Fatalf("rejected cancel: %d, state %s", resp.StatusCode, s.API.Deployment("dev-1", dep.ID).State)
	}
	// Asked again, it confirms.
	s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/dev-1/deployments/%d/cancel", dep.ID), nil, nil)
	d.req("POST", fmt.Sprintf("/cancelAction/%d/feedback", dep.ID), `{"status":{"execution":"closed","result":{"finished":"success"}}}`)
	if st := s.API.Deployment("dev-1", dep.ID).State; st != "canceled" {
		t.Fatalf("confirmed cancel = %s", st)
	}
	if resp, _ := d.req("GET", fmt.Sprintf("/deploymentBase/%d", dep.ID), nil); resp.StatusCode != 404 {
		t.Fatalf("deploymentBase after cancel = %d, want 404", resp.StatusCode)
	}
}

func TestAuthentication(t *testing.T) {
	s, d, _ := setup(t)
	// Wrong and missing credentials.
	for _, auth := range []string{"", "TargetToken nope", "Bearer " + servertest.AdminToken, "GatewayToken " + servertest.AdminToken} {
		dd := d
		dd.auth = auth
		if resp, b := dd.req("GET", "", nil); resp.StatusCode != 401 {
			t.Errorf("auth %q = %d %s, want 401", auth, resp.StatusCode, b)
		}
	}
	// A gateway token registers an unknown device at its first poll, with
	// a token an operator can read; the tenant matches case-insensitively.
	gw := s.API.GatewayToken()
	g := device{t: t, base: s.URL + "/DEFAULT/controller/v1/new-device", auth: "GatewayToken " + gw}
	if resp, b := g.req("GET", "/deploymentBase/1", nil); resp.StatusCode != 404 {
		t.Fatalf("unknown device on a non-poll resource = %d %s", resp.StatusCode, b)
	}
	p, _ := g.poll()
	if !strings.HasPrefix(p.Links.ConfigData.Href, s.URL+"/DEFAULT/controller/v1/new-device/") {
		t.Fatalf("links use %s", p.Links.ConfigData.Href)
	}
	var dev struct{ ID, Token string }
	s.API.Must(200, "GET", "/api/v1/devices/new-device", nil, &dev)
	if dev.Token == "" {
		t.Fatal("auto-registered device has no readable token")
	}
	tg := device{t: t, base: s.URL + "/default/controller/v1/new-device", auth: "TargetToken " + dev.Token}
	tg.poll()
	// Another tenant's device token does not work here.
	s.API.Must(201, "POST", "/api/v1/tenants", map[string]string{"name": "other"}, nil)
	o := device{t: t, base: s.URL + "/other/controller/v1/dev-1", auth: d.auth}
	if resp, _ := o.req("GET", "", nil); resp.StatusCode != 401 {
		t.Fatalf("cross-tenant token = %d", resp.StatusCode)
	}
	// Anonymous access only when the tenant turns it on.
	anon := device{t: t, base: s.URL + "/other/controller/v1/anon-1"}
	if resp, _ := anon.req("GET", "", nil); resp.StatusCode != 401 {
		t.Fatalf("anonymous when off = %d", resp.StatusCode)
	}
	s.API.Must(200, "PATCH", "/api/v1/tenants/other", map[string]any{"anonymous_ddi": true}, nil)
	anon.poll()
	// Revoking the gateway token stops it at once.
	var toks struct{ Items []struct{ ID, Name string } }
	s.API.Must(200, "GET", "/api/v1/tokens", nil, &toks)
	for _, tk := range toks.Items {
		if tk.Name == "gateway" {
			s.API.Must(204, "DELETE", "/api/v1/tokens/"+tk.ID, nil, nil)
		}
	}
	if resp, _ := g.req("GET", "", nil); resp.StatusCode != 401 {
		t.Fatalf("revoked gateway token = %d", resp.StatusCode)
	}
}

func TestConfigData(t *testing.T) {
	s, d, _ := setup(t)
	put := func(body string) int {
		resp, _ := d.req("PUT", "/configData", body)
		return resp.StatusCode
	}
	if c := put(`{"id":"x","time":"20260101T000000","status":{"execution":"closed","result":{"finished":"success"}},"data":{"hw":"rev2","version":"1.0.0","label.region":"eu","cores":4}}`); c != 200 {
		t.Fatalf("configData = %d", c)
	}
	var dev struct {
		Attributes map[string]string
		Labels     map[string]string
		Version    string
	}
	s.API.Must(200, "GET", "/api/v1/devices/dev-1", nil, &dev)
	if dev.Attributes["hw"] != "rev2" || dev.Attributes["cores"] != "4" || dev.Labels["region"] != "eu" || dev.Labels["app"] != "kiosk" || dev.Version != "1.0.0" {
		t.Fatalf("device after merge = %+v", dev)
	}
	if p, _ := d.poll(); p.Links.ConfigData != nil {
		t.Fatal("configData still requested after upload")
	}
	put(`{"mode":"remove","data":{"hw":""}}`)
	dev.Attributes = nil
	s.API.Must(200, "GET", "/api/v1/devices/dev-1", nil, &dev)
	if _, ok := dev.Attributes["hw"]; ok {
		t.Fatalf("remove left hw: %+v", dev.Attributes)
	}
	put(`{"mode":"replace","data":{"only":"this"}}`)
	dev.Attributes = nil
	s.API.Must(200, "GET", "/api/v1/devices/dev-1", nil, &dev)
	if len(dev.Attributes) != 1 || dev.Attributes["only"] != "this" {
		t.Fatalf("replace = %+v", dev.Attributes)
	}
	// The same attributes again, unasked, write nothing.
	var before, after struct {
		UpdatedAt time.Time `json:"updated_at"`
	}
	s.API.Must(200, "GET", "/api/v1/devices/dev-1", nil, &before)
	s.Clock().Advance(time.Minute)
	if c := put(`{"mode":"merge","data":{"only":"this"}}`); c != 200 {
		t.Fatalf("configData again = %d", c)
	}
	s.API.Must(200, "GET", "/api/v1/devices/dev-1", nil, &after)
	if !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("unchanged attributes rewrote the device (updated_at %v -> %v)", before.UpdatedAt, after.UpdatedAt)
	}
	// Asked for again, the same attributes answer the request.
	if err := s.Srv.Store.SetAttributesRequested(context.Background(), "default", "dev-1", true); err != nil {
		t.Fatal(err)
	}
	s.Srv.Core.InvalidateDevice("default", "dev-1")
	if p, _ := d.poll(); p.Links.ConfigData == nil {
		t.Fatal("configData not requested after the request")
	}
	put(`{"mode":"merge","data":{"only":"this"}}`)
	if p, _ := d.poll(); p.Links.ConfigData != nil {
		t.Fatal("configData still requested after the same attributes answered the request")
	}
	for _, bad := range []string{`{"mode":"append","data":{}}`, `{"data":{"a":{"b":1}}}`, `{"mode":"merge"}`, `{"data":{"label.bad key":"x"}}`} {
		if c := put(bad); c != 400 {
			t.Errorf("configData %s = %d, want 400", bad, c)
		}
	}
}

func TestDownloads(t *testing.T) {
	s, d, art := setup(t)
	base := fmt.Sprintf("/softwaremodules/%d/artifacts/kiosk.swu", art.ID)
	// Not assigned yet: not downloadable.
	if resp, _ := d.req("GET", base, nil); resp.StatusCode != 404 {
		t.Fatalf("unassigned download = %d", resp.StatusCode)
	}
	s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	resp, b := d.req("GET", base, nil)
	if resp.StatusCode != 200 || string(b) != "firmware 2.0.0 bytes" || resp.Header.Get("ETag") != `"`+art.SHA256+`"` {
		t.Fatalf("download = %d %q etag %s", resp.StatusCode, b, resp.Header.Get("ETag"))
	}
	resp, b = d.req("GET", base+".MD5SUM", nil)
	sum := md5.Sum([]byte("firmware 2.0.0 bytes"))
	if resp.StatusCode != 200 || string(b) != hex.EncodeToString(sum[:])+"  kiosk.swu\n" {
		t.Fatalf("MD5SUM = %d %q", resp.StatusCode, b)
	}
	resp, b = d.req("GET", base, nil, "Range", "bytes=9-13", "If-Range", `"`+art.SHA256+`"`)
	if resp.StatusCode != 206 || string(b) != "2.0.0" {
		t.Fatalf("range = %d %q", resp.StatusCode, b)
	}
	// A stale If-Range gets the whole file.
	resp, _ = d.req("GET", base, nil, "Range", "bytes=9-13", "If-Range", `"stale"`)
	if resp.StatusCode != 200 {
		t.Fatalf("stale If-Range = %d, want 200", resp.StatusCode)
	}
	resp, b = d.req("GET", base, nil, "Range", "bytes=0-3,9-13")
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 206 || mt != "multipart/byteranges" {
		t.Fatalf("multipart range = %d %s", resp.StatusCode, mt)
	}
	mr := multipart.NewReader(bytes.NewReader(b), params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		pb, _ := io.ReadAll(p)
		parts = append(parts, string(pb))
	}
	if strings.Join(parts, "|") != "firm|2.0.0" {
		t.Fatalf("multipart parts = %q", parts)
	}
	if resp, _ := d.req("GET", base, nil, "Range", "bytes=500-"); resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable range = %d", resp.StatusCode)
	}
	// Range requests write no history entries.
	dep := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	before := len(s.API.Deployment("dev-1", dep.ID).History)
	for i := 0; i < 5; i++ {
		d.req("GET", base, nil, "Range", fmt.Sprintf("bytes=%d-", i))
	}
	if after := len(s.API.Deployment("dev-1", dep.ID).History); after != before {
		t.Fatalf("history grew from %d to %d on range requests", before, after)
	}
	if s.Metric(t, `flotilla_ddi_downloads_total{kind="range"}`) < 5 {
		t.Fatal("range downloads not counted")
	}
}

// TestRepeatedFinalFeedbackIsReannounced: a device that repeats the feedback
// that finished its deployment (it got no answer: the replica may have died
// before telling the others) gets 410, and the final state is published
// again so watchers that missed it catch up. Other late feedback is not.
func TestRepeatedFinalFeedbackIsReannounced(t *testing.T) {
	s, d, _ := setup(t)
	dep := s.API.Assign("dev-1", "kiosk-fw", "2.0.0", nil)
	if code, b := d.feedback(dep.ID, "closed", "success"); code != 200 {
		t.Fatalf("feedback = %d %s", code, b)
	}
	sub, _ := s.Srv.Hub.Subscribe(events.Filter{DeviceID: "dev-1", Types: []string{events.TypeDeployment}}, 0)
	defer sub.Close()
	for _, f := range []struct{ exec, fin string }{{"closed", "failure"}, {"proceeding", "none"}, {"closed", "success"}} {
		if code, _ := d.feedback(dep.ID, f.exec, f.fin); code != 410 {
			t.Fatalf("repeated feedback %s/%s = %d, want 410", f.exec, f.fin, code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := sub.Next(ctx)
	if err != nil || len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"state":"succeeded"`) {
		t.Fatalf("events after repeated feedback: %v %v", evs, err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if more, _ := sub.Next(ctx2); len(more) != 0 {
		t.Fatalf("mismatched late feedback was announced: %v", more)
	}
}
