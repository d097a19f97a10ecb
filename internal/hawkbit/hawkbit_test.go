package hawkbit_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// client speaks to /rest/v1 as hawkBit tooling does: HTTP Basic, the
// password a Flotilla token.
type client struct {
	t    *testing.T
	base string
	user string
	pass string
}

func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b) // JSON as the documentation shows it
	case *multipart.Writer:
		c.t.Fatal("use upload")
	default:
		js, _ := json.Marshal(b)
		r = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, c.base+"/rest/v1"+path, r)
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/hal+json")
	req.SetBasicAuth(c.user, c.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (c *client) must(want int, method, path string, body, v any) {
	c.t.Helper()
	code, out := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, code, out, want)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
}

// upload posts a multipart artifact as hawkBit's documentation shows.
func (c *client) upload(module int64, filename string, data []byte, fields map[string]string) (int, []byte) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("file", filename)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/rest/v1/softwaremodules/%d/artifacts", c.base, module), &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.SetBasicAuth(c.user, c.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func newClient(t *testing.T, s *servertest.Server) *client {
	return &client{t: t, base: s.URL, user: `DEFAULT\admin`, pass: servertest.AdminToken}
}

type hbError struct {
	ExceptionClass, ErrorCode, Message string
}

func wantError(t *testing.T, code int, body []byte, status int, errorCode string) {
	t.Helper()
	var e hbError
	if code != status || json.Unmarshal(body, &e) != nil || e.ExceptionClass == "" || e.ErrorCode != errorCode || e.Message == "" {
		t.Fatalf("got %d %s, want %d with errorCode %s in hawkBit's shape", code, body, status, errorCode)
	}
}

// ddiGet polls as a device.
func ddiGet(t *testing.T, url, auth string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// twoModuleSet makes an OS and an application module with two artifacts
// each (hashes checked), and a distribution set of both, through /rest/v1.
func twoModuleSet(t *testing.T, c *client, version string) (dsID int64, moduleIDs []int64) {
	var mods []struct{ ID int64 }
	c.must(201, "POST", "/softwaremodules", fmt.Sprintf(`[ {
  "vendor" : "Vendor Limited, California",
  "name" : "os-image",
  "description" : "a description",
  "type" : "os",
  "version" : "%[1]s"
}, {
  "vendor" : "Vendor GmbH, Stuttgart, Germany",
  "name" : "kiosk-app",
  "description" : "a description",
  "type" : "application",
  "version" : "%[1]s"
} ]`, version), &mods)
	for _, m := range mods {
		for i := 1; i <= 2; i++ {
			data := []byte(fmt.Sprintf("module %d file %d version %s\n", m.ID, i, version))
			s1, m5 := sha1.Sum(data), md5.Sum(data)
			code, body := c.upload(m.ID, fmt.Sprintf("file%d.bin", i), data, map[string]string{"sha1sum": hex.EncodeToString(s1[:]), "md5sum": hex.EncodeToString(m5[:])})
			if code != 201 {
				t.Fatalf("upload: %d %s", code, body)
			}
			var art struct {
				ID               int64
				ProvidedFilename string
				Size             int64
				Hashes           map[string]string
			}
			json.Unmarshal(body, &art)
			if art.ProvidedFilename != fmt.Sprintf("file%d.bin", i) || art.Size != int64(len(data)) || art.Hashes["sha1"] != hex.EncodeToString(s1[:]) {
				t.Fatalf("artifact = %s", body)
			}
		}
		moduleIDs = append(moduleIDs, m.ID)
	}
	var sets []struct{ ID int64 }
	c.must(201, "POST", "/distributionsets", fmt.Sprintf(`[ {
  "requiredMigrationStep" : false,
  "name" : "kiosk-set",
  "description" : "two modules",
  "type" : "os_app",
  "version" : "%s",
  "modules" : [ { "id" : %d }, { "id" : %d } ]
} ]`, version, moduleIDs[0], moduleIDs[1]), &sets)
	return sets[0].ID, moduleIDs
}

// TestTargetsModulesSetsAndActions drives /rest/v1 with the JSON of
// hawkBit's documentation: targets with and without a securityToken, two
// modules of two artifacts each, a distribution set of them assigned
// download-only with a maintenance window, then cancelled and force-quit.
func TestTargetsModulesSetsAndActions(t *testing.T) {
	s := servertest.Start(t)
	c := newClient(t, s)

	// Targets, with and without a securityToken.
	var created []struct {
		ControllerID, Name, SecurityToken, UpdateStatus string
	}
	c.must(201, "POST", "/targets", `[ {
  "securityToken" : "2345678DGGDGFTDzztgf",
  "address" : "https://192.168.0.1",
  "controllerId" : "target-1",
  "name" : "controllerName",
  "description" : "Example description of a target"
}, {
  "controllerId" : "target-2",
  "name" : "target-2",
  "description" : "without a token"
} ]`, &created)
	if len(created) != 2 || created[0].SecurityToken != "2345678DGGDGFTDzztgf" || created[1].SecurityToken == "" || created[0].Name != "controllerName" || created[0].UpdateStatus != "unknown" {
		t.Fatalf("created targets = %+v", created)
	}
	// The given token works on DDI at once; the generated one too.
	if code, _ := ddiGet(t, s.URL+"/default/controller/v1/target-1", "TargetToken 2345678DGGDGFTDzztgf"); code != 200 {
		t.Fatalf("DDI with the given securityToken: %d", code)
	}
	if code, _ := ddiGet(t, s.URL+"/default/controller/v1/target-2", "TargetToken "+created[1].SecurityToken); code != 200 {
		t.Fatalf("DDI with the generated securityToken: %d", code)
	}
	code, body := c.do("POST", "/targets", `[ { "controllerId" : "target-1" } ]`)
	wantError(t, code, body, 409, "hawkbit.server.error.repo.entitiyAlreayExists")
	code, body = c.do("GET", "/targets/nope", nil)
	wantError(t, code, body, 404, "hawkbit.server.error.repo.entitiyNotFound")

	// securityToken only for a token with devices:tokens.
	var reader struct{ Token string }
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"scopes": []string{"devices:read"}}, &reader)
	var seen map[string]any
	(&client{t: t, base: s.URL, user: "reader", pass: reader.Token}).must(200, "GET", "/targets/target-1", nil, &seen)
	if _, ok := seen["securityToken"]; ok || seen["controllerId"] != "target-1" || seen["description"] != "Example description of a target" {
		t.Fatalf("a devices:read token sees %v", seen)
	}
	c.must(200, "GET", "/targets/target-1", nil, &seen)
	if seen["securityToken"] != "2345678DGGDGFTDzztgf" {
		t.Fatalf("the admin does not see the securityToken: %v", seen)
	}
	// PUT renames; the list filters and pages.
	c.must(200, "PUT", "/targets/target-2", `{ "name" : "renamed", "description" : "now described" }`, nil)
	var page struct {
		Content []struct{ ControllerID, Name string }
		Total   int
		Size    int
	}
	c.must(200, "GET", "/targets?q=name==renamed&offset=0&limit=10", nil, &page)
	if page.Total != 1 || page.Content[0].ControllerID != "target-2" {
		t.Fatalf("q=name==renamed: %+v", page)
	}
	c.must(200, "GET", "/targets?q=controllerId==target*&sort=controllerId:DESC&limit=1", nil, &page)
	if page.Total != 2 || page.Size != 1 || page.Content[0].ControllerID != "target-2" {
		t.Fatalf("sorted page: %+v", page)
	}
	code, body = c.do("GET", "/targets?q=color==red", nil)
	wantError(t, code, body, 400, "hawkbit.server.error.repo.constraintViolation")
	if !strings.Contains(string(body), "color") {
		t.Fatalf("the 400 does not name the field: %s", body)
	}

	// A set of two modules with two artifacts each; a wrong hash is refused.
	dsID, mods := twoModuleSet(t, c, "1.0.0")
	code, body = c.upload(mods[0], "bad.bin", []byte("bytes"), map[string]string{"sha1sum": strings.Repeat("0", 40)})
	if code != 400 || !strings.Contains(string(body), "sha1") {
		t.Fatalf("upload with a wrong sha1sum: %d %s", code, body)
	}
	var ds struct {
		Modules []struct {
			ID           int64
			Type, Locked any
		}
		Complete bool
	}
	c.must(200, "GET", fmt.Sprintf("/distributionsets/%d", dsID), nil, &ds)
	if len(ds.Modules) != 2 || ds.Modules[0].Type != "os" || !ds.Complete {
		t.Fatalf("distribution set = %+v", ds)
	}

	// Assign download-only with a maintenance window.
	var res struct {
		Assigned, AlreadyAssigned, Total int
		AssignedActions                  []struct{ ID int64 }
	}
	c.must(200, "POST", "/targets/target-1/assignedDS", fmt.Sprintf(`{
  "id" : %d,
  "type" : "downloadonly",
  "maintenanceWindow" : {
    "schedule" : "0 0 3 ? * 2",
    "duration" : "00:05:00",
    "timezone" : "+00:00"
  }
}`, dsID), &res)
	if res.Assigned != 1 || res.Total != 1 || len(res.AssignedActions) != 1 {
		t.Fatalf("assignment = %+v", res)
	}
	aid := res.AssignedActions[0].ID
	c.must(200, "POST", "/targets/target-1/assignedDS", fmt.Sprintf(`{ "id" : %d, "type" : "downloadonly" }`, dsID), &res)
	if res.AlreadyAssigned != 1 || res.Assigned != 0 {
		t.Fatalf("second assignment = %+v", res)
	}
	// The device sees both modules as chunks, download only.
	_, poll := ddiGet(t, s.URL+"/default/controller/v1/target-1", "TargetToken 2345678DGGDGFTDzztgf")
	href := poll["_links"].(map[string]any)["deploymentBase"].(map[string]any)["href"].(string)
	_, base := ddiGet(t, href, "TargetToken 2345678DGGDGFTDzztgf")
	dep := base["deployment"].(map[string]any)
	chunks := dep["chunks"].([]any)
	if dep["update"] != "skip" || len(chunks) != 2 || chunks[0].(map[string]any)["part"] != "os" || len(chunks[1].(map[string]any)["artifacts"].([]any)) != 2 {
		t.Fatalf("deploymentBase = %v", base)
	}
	var act struct {
		ID                                    int64
		Type, Status, DetailStatus, ForceType string
		MaintenanceWindow                     struct{ Schedule, Duration, Timezone string }
	}
	c.must(200, "GET", fmt.Sprintf("/targets/target-1/actions/%d", aid), nil, &act)
	if act.ForceType != "downloadonly" || act.Status != "pending" || act.DetailStatus != "retrieved" || act.MaintenanceWindow.Schedule != "0 0 3 ? * 2" {
		t.Fatalf("action = %+v", act)
	}
	var assigned map[string]any
	c.must(200, "GET", "/targets/target-1/assignedDS", nil, &assigned)
	if assigned["name"] != "kiosk-set" {
		t.Fatalf("assignedDS = %v", assigned)
	}
	if code, _ := c.do("GET", "/targets/target-1/installedDS", nil); code != 204 {
		t.Fatalf("installedDS before any install: %d", code)
	}

	// Cancel: the device fetched it, so it is asked; then force-quit.
	code, body = c.do("DELETE", fmt.Sprintf("/targets/target-1/actions/%d?force=true", aid), nil)
	wantError(t, code, body, 409, "hawkbit.server.error.repo.entitiyAlreayExists")
	if code, body := c.do("DELETE", fmt.Sprintf("/targets/target-1/actions/%d", aid), nil); code != 204 {
		t.Fatalf("cancel: %d %s", code, body)
	}
	c.must(200, "GET", fmt.Sprintf("/targets/target-1/actions/%d", aid), nil, &act)
	if act.Type != "cancel" || act.DetailStatus != "canceling" {
		t.Fatalf("action after cancel = %+v", act)
	}
	if code, body := c.do("DELETE", fmt.Sprintf("/targets/target-1/actions/%d?force=true", aid), nil); code != 204 {
		t.Fatalf("force quit: %d %s", code, body)
	}
	c.must(200, "GET", fmt.Sprintf("/targets/target-1/actions/%d", aid), nil, &act)
	if act.Status != "finished" || act.DetailStatus != "canceled" {
		t.Fatalf("action after force quit = %+v", act)
	}
	var statuses struct {
		Content []struct {
			ID         int64
			Type       string
			Messages   []string
			ReportedAt int64
		}
		Total int
	}
	c.must(200, "GET", fmt.Sprintf("/targets/target-1/actions/%d/status?offset=0&limit=50&sort=id:ASC", aid), nil, &statuses)
	var types []string
	for _, st := range statuses.Content {
		types = append(types, st.Type)
	}
	if got := strings.Join(types, ","); got != "running,retrieved,canceling,canceled" {
		t.Fatalf("status types = %s (%+v)", got, statuses.Content)
	}
	var actions struct{ Total int }
	c.must(200, "GET", "/targets/target-1/actions", nil, &actions)
	if actions.Total != 1 {
		t.Fatalf("actions = %+v", actions)
	}
	// A module of a set is locked; a set in use is not deleted.
	var mod map[string]any
	c.must(200, "GET", fmt.Sprintf("/softwaremodules/%d", mods[0]), nil, &mod)
	if mod["locked"] != true || mod["typeName"] != "OS" {
		t.Fatalf("module = %v", mod)
	}
	code, body = c.do("DELETE", fmt.Sprintf("/softwaremodules/%d", mods[0]), nil)
	wantError(t, code, body, 409, "hawkbit.server.error.repo.entitiyAlreayExists")
	var types2 struct{ Content []struct{ Key string } }
	c.must(200, "GET", "/softwaremoduletypes", nil, &types2)
	if len(types2.Content) < 2 || types2.Content[0].Key != "os" {
		t.Fatalf("module types = %+v", types2)
	}
	// Bad credentials are a 401 asking for Basic.
	code, _ = (&client{t: t, base: s.URL, user: "x", pass: "nope"}).do("GET", "/targets", nil)
	if code != 401 {
		t.Fatalf("bad password: %d", code)
	}
}

// TestSystemConfigs: configuration changes take effect on the devices' next
// request.
func TestSystemConfigs(t *testing.T) {
	s := servertest.Start(t, servertest.WithPollInterval(5*time.Minute))
	c := newClient(t, s)
	tok := s.API.CreateDevice("dev-1", nil)
	var cfg struct {
		Value  any
		Global bool
	}
	c.must(200, "GET", "/system/configs/pollingTime", nil, &cfg)
	if cfg.Value != "00:05:00" || !cfg.Global {
		t.Fatalf("default pollingTime = %+v", cfg)
	}
	c.must(200, "PUT", "/system/configs/pollingTime", `{ "value" : "00:00:07" }`, &cfg)
	if cfg.Value != "00:00:07" || cfg.Global {
		t.Fatalf("pollingTime after PUT = %+v", cfg)
	}
	_, poll := ddiGet(t, s.URL+"/default/controller/v1/dev-1", "TargetToken "+tok)
	if sleep := poll["config"].(map[string]any)["polling"].(map[string]any)["sleep"]; sleep != "00:00:07" {
		t.Fatalf("the device is told to sleep %v", sleep)
	}
	code, body := c.do("PUT", "/system/configs/pollingTime", `{ "value" : "seven" }`)
	wantError(t, code, body, 400, "hawkbit.server.error.repo.constraintViolation")

	// Target tokens off: refused at once; gateway key on: accepted.
	c.must(200, "PUT", "/system/configs/authentication.targettoken.enabled", `{ "value" : false }`, nil)
	if code, _ := ddiGet(t, s.URL+"/default/controller/v1/dev-1", "TargetToken "+tok); code != 401 {
		t.Fatalf("target token with target tokens disabled: %d", code)
	}
	c.must(200, "PUT", "/system/configs/authentication.gatewaytoken.key", `{ "value" : "my-gateway-key-0123456789" }`, nil)
	if code, _ := ddiGet(t, s.URL+"/default/controller/v1/gw-dev", "GatewayToken my-gateway-key-0123456789"); code != 200 {
		t.Fatalf("the gateway key: %d", code)
	}
	c.must(200, "GET", "/system/configs/authentication.gatewaytoken.key", nil, &cfg)
	if cfg.Value != "my-gateway-key-0123456789" {
		t.Fatalf("gateway key read back = %+v", cfg)
	}
	// Replacing the key revokes the old one.
	c.must(200, "PUT", "/system/configs/authentication.gatewaytoken.key", `{ "value" : "another-gateway-key-987654" }`, nil)
	if code, _ := ddiGet(t, s.URL+"/default/controller/v1/gw-dev", "GatewayToken my-gateway-key-0123456789"); code != 401 {
		t.Fatalf("the replaced gateway key still works: %d", code)
	}
	c.must(200, "PUT", "/system/configs/authentication.gatewaytoken.enabled", `{ "value" : false }`, nil)
	if code, _ := ddiGet(t, s.URL+"/default/controller/v1/gw-dev", "GatewayToken another-gateway-key-987654"); code != 401 {
		t.Fatalf("gateway token with gateway tokens disabled: %d", code)
	}
	c.must(200, "PUT", "/system/configs/authentication.targettoken.enabled", `{ "value" : true }`, nil)
	if code, _ := ddiGet(t, s.URL+"/default/controller/v1/dev-1", "TargetToken "+tok); code != 200 {
		t.Fatalf("target token re-enabled: %d", code)
	}
	code, body = c.do("GET", "/system/configs/no.such.key", nil)
	wantError(t, code, body, 404, "hawkbit.server.error.repo.entitiyNotFound")
	// Anonymous downloads of a module file.
	var mods []struct{ ID int64 }
	c.must(201, "POST", "/softwaremodules", `[ { "name" : "m", "version" : "1", "type" : "os" } ]`, &mods)
	c.upload(mods[0].ID, "f.bin", []byte("anonymous bytes"), nil)
	url := fmt.Sprintf("%s/default/controller/v1/anyone/softwaremodules/%d/artifacts/f.bin", s.URL, mods[0].ID)
	if resp, _ := http.Get(url); resp.StatusCode != 401 {
		t.Fatalf("anonymous download before enabling: %d", resp.StatusCode)
	}
	c.must(200, "PUT", "/system/configs/anonymous.download.enabled", `{ "value" : true }`, nil)
	resp, _ := http.Get(url)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "anonymous bytes" {
		t.Fatalf("anonymous download: %d %q", resp.StatusCode, b)
	}
	// A token without tenants:write reads no configuration.
	var ro struct{ Token string }
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"scopes": []string{"devices:write"}}, &ro)
	code, body = (&client{t: t, base: s.URL, user: "x", pass: ro.Token}).do("GET", "/system/configs/pollingTime", nil)
	wantError(t, code, body, 403, "hawkbit.server.error.insufficientpermission")
}

type nopInstaller struct{ updater.DefaultFetcher }

func (nopInstaller) Apply(context.Context, *updater.Update, *updater.Payload) error { return nil }

// TestRolloutByFilter: a rollout of targets chosen by a FIQL filter, in 3
// groups with a 50% success threshold, runs to finished through /rest/v1.
func TestRolloutByFilter(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond }))
	c := newClient(t, s)
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("roll-%d", i)
		tok := s.API.CreateDevice(id, nil)
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "0.9", Handler: nopInstaller{}, ActiveInterval: 200 * time.Millisecond})
	}
	s.API.CreateDevice("other-1", nil) // not matched by the filter
	dsID, _ := twoModuleSet(t, c, "2.0.0")
	var ro struct {
		ID                    int64
		Status                string
		TotalTargets          int
		TotalGroups           int
		TotalTargetsPerStatus map[string]int
		TargetFilterQuery     string
	}
	c.must(201, "POST", "/rollouts", fmt.Sprintf(`{
  "distributionSetId" : %d,
  "targetFilterQuery" : "controllerId==roll-*",
  "description" : "Rollout for all named targets",
  "amountGroups" : 3,
  "type" : "forced",
  "successCondition" : { "condition" : "THRESHOLD", "expression" : "50" },
  "successAction" : { "action" : "NEXTGROUP", "expression" : "" },
  "errorCondition" : { "condition" : "THRESHOLD", "expression" : "80" },
  "errorAction" : { "action" : "PAUSE", "expression" : "" },
  "name" : "exampleRollout"
}`, dsID), &ro)
	if ro.TotalTargets != 6 || ro.TotalGroups != 3 || ro.TargetFilterQuery != "controllerId==roll-*" || ro.ID <= 0 {
		t.Fatalf("rollout = %+v", ro)
	}
	c.must(200, "POST", fmt.Sprintf("/rollouts/%d/start", ro.ID), nil, nil)
	servertest.Eventually(t, 30*time.Second, func() error {
		c.must(200, "GET", fmt.Sprintf("/rollouts/%d", ro.ID), nil, &ro)
		if ro.Status != "finished" {
			return fmt.Errorf("rollout %s: %v", ro.Status, ro.TotalTargetsPerStatus)
		}
		return nil
	})
	if ro.TotalTargetsPerStatus["finished"] != 6 {
		t.Fatalf("per status = %v", ro.TotalTargetsPerStatus)
	}
	var groups struct {
		Content []struct {
			ID               int64
			Status           string
			TotalTargets     int
			SuccessCondition struct{ Condition, Expression string }
		}
		Total int
	}
	c.must(200, "GET", fmt.Sprintf("/rollouts/%d/deploygroups", ro.ID), nil, &groups)
	if groups.Total != 3 || groups.Content[2].Status != "finished" || groups.Content[0].SuccessCondition.Expression != "50" {
		t.Fatalf("groups = %+v", groups)
	}
	var targets struct{ Total int }
	c.must(200, "GET", fmt.Sprintf("/rollouts/%d/deploygroups/%d/targets", ro.ID, groups.Content[0].ID), nil, &targets)
	if targets.Total != groups.Content[0].TotalTargets {
		t.Fatalf("group targets = %d, want %d", targets.Total, groups.Content[0].TotalTargets)
	}
	// The native API sees the same rollout.
	var native struct {
		Items []struct{ Name, Status string }
	}
	s.API.Must(200, "GET", "/api/v1/rollouts", nil, &native)
	if len(native.Items) != 1 || native.Items[0].Name != "exampleRollout" || native.Items[0].Status != "completed" {
		t.Fatalf("native view = %+v", native)
	}
	var installed map[string]any
	c.must(200, "GET", "/targets/roll-0/installedDS", nil, &installed)
	if installed["version"] != "2.0.0" {
		t.Fatalf("installedDS = %v", installed)
	}
	code, body := c.do("POST", "/rollouts", `{ "distributionSetId" : 1, "targetFilterQuery" : "controllerId==roll-*", "amountGroups" : 1, "name" : "x", "successCondition" : { "condition" : "OTHER", "expression" : "5" } }`)
	if code != 400 {
		t.Fatalf("unsupported condition: %d %s", code, body)
	}
}

// TestIsolationAndScopes walks /rest/v1 with another tenant's admin token
// (addressing the default tenant by name, and not) and with a read-only
// token of the default tenant: every call on another tenant's resources is
// a 404 (or 401 when the name asks for the tenant), every write without
// its scope a 403, and nothing changes.
func TestIsolationAndScopes(t *testing.T) {
	s := servertest.Start(t)
	c := newClient(t, s)
	c.must(201, "POST", "/targets", `[ { "controllerId" : "acme-1", "securityToken" : "acme-1-security-token-000" } ]`, nil)
	dsID, mods := twoModuleSet(t, c, "1.0.0")
	var res struct{ AssignedActions []struct{ ID int64 } }
	c.must(200, "POST", "/targets/acme-1/assignedDS", fmt.Sprintf(`{ "id" : %d }`, dsID), &res)
	aid := res.AssignedActions[0].ID
	var ro struct{ ID int64 }
	c.must(201, "POST", "/rollouts", fmt.Sprintf(`{ "name" : "r", "distributionSetId" : %d, "targetFilterQuery" : "controllerId==acme-*", "amountGroups" : 1 }`, dsID), &ro)

	s.API.Must(201, "POST", "/api/v1/tenants", map[string]any{"name": "beta"}, nil)
	var beta, reader struct{ Token string }
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"tenant": "beta", "scopes": []string{"admin"}}, &beta)
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"scopes": []string{"artifacts:read", "devices:read", "rollouts:read"}}, &reader)

	routes := []struct {
		method, path, body string
	}{
		{"GET", "/targets/acme-1", ""},
		{"PUT", "/targets/acme-1", `{ "name" : "pwned" }`},
		{"DELETE", "/targets/acme-1", ""},
		{"GET", "/targets/acme-1/attributes", ""},
		{"GET", "/targets/acme-1/assignedDS", ""},
		{"POST", "/targets/acme-1/assignedDS", fmt.Sprintf(`{ "id" : %d }`, dsID)},
		{"GET", "/targets/acme-1/installedDS", ""},
		{"GET", "/targets/acme-1/actions", ""},
		{"GET", fmt.Sprintf("/targets/acme-1/actions/%d", aid), ""},
		{"GET", fmt.Sprintf("/targets/acme-1/actions/%d/status", aid), ""},
		{"DELETE", fmt.Sprintf("/targets/acme-1/actions/%d", aid), ""},
		{"GET", fmt.Sprintf("/softwaremodules/%d", mods[0]), ""},
		{"DELETE", fmt.Sprintf("/softwaremodules/%d", mods[0]), ""},
		{"GET", fmt.Sprintf("/softwaremodules/%d/artifacts", mods[0]), ""},
		{"GET", fmt.Sprintf("/distributionsets/%d", dsID), ""},
		{"DELETE", fmt.Sprintf("/distributionsets/%d", dsID), ""},
		{"POST", fmt.Sprintf("/distributionsets/%d/assignedTargets", dsID), `[ { "id" : "acme-1" } ]`},
		{"GET", fmt.Sprintf("/distributionsets/%d/assignedTargets", dsID), ""},
		{"GET", fmt.Sprintf("/rollouts/%d", ro.ID), ""},
		{"POST", fmt.Sprintf("/rollouts/%d/start", ro.ID), ""},
		{"DELETE", fmt.Sprintf("/rollouts/%d", ro.ID), ""},
		{"GET", fmt.Sprintf("/rollouts/%d/deploygroups", ro.ID), ""},
	}
	for _, who := range []*client{
		{t: t, base: s.URL, user: "intruder", pass: beta.Token},
		{t: t, base: s.URL, user: `DEFAULT\intruder`, pass: beta.Token},
	} {
		for _, r := range routes {
			var body any
			if r.body != "" {
				body = r.body
			}
			if code, out := who.do(r.method, r.path, body); code != 404 {
				t.Errorf("%s as %s: %s %s = %d %s, want 404", who.user, "beta", r.method, r.path, code, out)
			}
		}
		// Lists show nothing of acme's: beta's own (empty) tenant, or
		// no tenant at all when acme's is named.
		code, out := who.do("GET", "/targets", nil)
		if who.user == "intruder" && (code != 200 || !strings.Contains(string(out), `"total":0`)) || who.user != "intruder" && code != 404 {
			t.Errorf("%s lists targets: %d %s", who.user, code, out)
		}
	}
	rdr := &client{t: t, base: s.URL, user: "reader", pass: reader.Token}
	for _, r := range routes {
		var body any
		if r.body != "" {
			body = r.body
		}
		code, out := rdr.do(r.method, r.path, body)
		if r.method == "GET" && code != 200 && code != 204 || r.method != "GET" && code != 403 {
			t.Errorf("read-only %s %s = %d %s", r.method, r.path, code, out)
		}
	}
	for _, w := range []struct{ path, body string }{
		{"/targets", `[ { "controllerId" : "evil" } ]`}, {"/softwaremodules", `[ { "name" : "evil", "version" : "1", "type" : "os" } ]`},
		{"/distributionsets", fmt.Sprintf(`[ { "name" : "evil", "version" : "1", "modules" : [ { "id" : %d } ] } ]`, mods[0])},
		{"/rollouts", fmt.Sprintf(`{ "name" : "evil", "distributionSetId" : %d, "targetFilterQuery" : "controllerId==acme-*", "amountGroups" : 1 }`, dsID)},
	} {
		if code, out := rdr.do("POST", w.path, w.body); code != 403 {
			t.Errorf("read-only POST %s = %d %s", w.path, code, out)
		}
	}
	// Nothing changed.
	var tg map[string]any
	c.must(200, "GET", "/targets/acme-1", nil, &tg)
	var act struct{ DetailStatus string }
	c.must(200, "GET", fmt.Sprintf("/targets/acme-1/actions/%d", aid), nil, &act)
	if tg["name"] != "acme-1" || act.DetailStatus != "running" {
		t.Fatalf("acme's target or action changed: %v %+v", tg, act)
	}
}
