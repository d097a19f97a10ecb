package dmf_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/dmf/dmfclient"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
	"github.com/flotilla-ota/flotilla/updater"
)

type okDevice struct{ updater.DefaultFetcher }

func (okDevice) Apply(context.Context, *updater.Update, *updater.Payload) error { return nil }

type rolloutView struct {
	ID     string
	Status string
	Waves  []struct {
		Index   int
		Devices []string
	}
}

// TestRolloutWithDMFAndDDIDevices: things registered by THING_CREATED and
// DDI devices go through one 3-wave rollout; each thing is told once, at
// its wave, and installs over the DDI download links with its target token.
func TestRolloutWithDMFAndDDIDevices(t *testing.T) {
	f := start(t)
	f.s.API.Upload("fw", "2.0.0", []byte(strings.Repeat("firmware 2 ", 3000)), "")
	things := []string{"thing-1", "thing-2", "thing-3"}
	for _, id := range things {
		f.create(id, map[string]string{"hw": "rev2"})
		f.s.API.Must(200, "PATCH", "/api/v1/devices/"+id, map[string]any{"labels": map[string]string{"fleet": "mixed"}}, nil)
	}
	if d := f.device("thing-1"); d.DMF == nil || d.DMF.Exchange != f.n.Reply || d.Attributes["hw"] != "rev2" {
		t.Fatalf("thing-1 after THING_CREATED: %+v", d)
	}
	dir := t.TempDir()
	for i := range 3 {
		id := fmt.Sprintf("ddi-%d", i)
		tok := f.s.API.CreateDevice(id, map[string]string{"fleet": "mixed"})
		f.s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0", Handler: okDevice{}, StateDir: filepath.Join(dir, id)})
	}
	in := &installer{told: map[string]map[string]int{}}
	go in.run(f.gw)

	var ro rolloutView
	f.s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "mixed", "artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"selector": "fleet=mixed", "waves": 3, "policy": map[string]any{"grace_seconds": 0}, "start": true}, &ro)
	servertest.Eventually(t, 60*time.Second, func() error {
		f.s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	if len(ro.Waves) != 3 {
		t.Fatalf("%d waves", len(ro.Waves))
	}
	for _, id := range append(things, "ddi-0", "ddi-1", "ddi-2") {
		if v := f.device(id).Version; v != "2.0.0" {
			t.Errorf("%s runs %q after the rollout", id, v)
		}
	}
	f.quiet("thing-1", 500*time.Millisecond)
	for _, id := range things {
		if n := in.count(id, dmf.TopicDownloadAndInstall); n != 1 {
			t.Errorf("%s was told DOWNLOAD_AND_INSTALL %d times, want once", id, n)
		}
	}
	if len(in.errs) > 0 {
		t.Fatalf("downloads: %v", in.errs)
	}
}

// TestMaintenanceWindowOverDMF is seed 002's case: while the window is
// closed the thing is told DOWNLOAD_AND_SKIP and reports DOWNLOADED; the
// moment the window opens it is told DOWNLOAD_AND_INSTALL.
func TestMaintenanceWindowOverDMF(t *testing.T) {
	f := start(t)
	f.s.API.Upload("fw", "2.0.0", []byte("fw 2"), "")
	f.create("thing-w", nil)
	day := time.Date(2026, 12, 1, 11, 59, 57, 0, time.UTC)
	f.s.Clock().Set(day)
	dep := f.s.API.Assign("thing-w", "fw", "2.0.0", map[string]any{"maintenance_window": map[string]string{"schedule": "0 0 12 * * ?", "duration": "01:00:00", "timezone": "UTC"}})
	m := f.next("thing-w", dmf.TopicDownloadAndSkip)
	req, err := m.Download()
	if err != nil || req.ActionID != dep.ID {
		t.Fatalf("DOWNLOAD_AND_SKIP %s: %v", m.Body, err)
	}
	if err := fetch(req); err != nil {
		t.Fatal(err)
	}
	if err := f.gw.Status(bg, "default", "thing-w", dep.ID, dmf.StatusDownloaded, "downloaded, waiting for the window"); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 10*time.Second, func() error {
		d := f.s.API.Deployment("thing-w", dep.ID)
		if len(d.History) == 0 || d.History[len(d.History)-1].Execution != "downloaded" {
			return fmt.Errorf("history %+v", d.History)
		}
		return nil
	})
	f.quiet("thing-w", 1500*time.Millisecond) // still closed: nothing new
	f.s.Clock().Set(day.Add(5 * time.Second)) // 12:00:02, open
	m = f.next("thing-w", dmf.TopicDownloadAndInstall)
	if m.ActionID() != dep.ID {
		t.Fatalf("DOWNLOAD_AND_INSTALL %s", m.Body)
	}
	f.gw.Status(bg, "default", "thing-w", dep.ID, dmf.StatusFinished)
	f.s.API.WaitDeployment("thing-w", dep.ID, 10*time.Second, "succeeded")
}

// TestCancelOverDMF: a cancel reaches the thing as CANCEL_DOWNLOAD; its
// CANCELED ends the action, CANCEL_REJECTED lets it run on.
func TestCancelOverDMF(t *testing.T) {
	f := start(t)
	f.s.API.Upload("fw", "2.0.0", []byte("fw 2"), "")
	f.s.API.Upload("fw", "3.0.0", []byte("fw 3"), "")
	f.create("thing-c", nil)
	dep := f.s.API.Assign("thing-c", "fw", "2.0.0", nil)
	f.next("thing-c", dmf.TopicDownloadAndInstall)
	f.gw.Status(bg, "default", "thing-c", dep.ID, dmf.StatusRunning)
	f.s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/thing-c/deployments/%d/cancel", dep.ID), nil, nil)
	m := f.next("thing-c", dmf.TopicCancelDownload)
	if m.ActionID() != dep.ID {
		t.Fatalf("CANCEL_DOWNLOAD %s", m.Body)
	}
	f.gw.Status(bg, "default", "thing-c", dep.ID, dmf.StatusCanceled)
	f.s.API.WaitDeployment("thing-c", dep.ID, 10*time.Second, "canceled")

	dep = f.s.API.Assign("thing-c", "fw", "3.0.0", nil)
	f.next("thing-c", dmf.TopicDownloadAndInstall)
	f.s.API.Must(200, "POST", fmt.Sprintf("/api/v1/devices/thing-c/deployments/%d/cancel", dep.ID), nil, nil)
	f.next("thing-c", dmf.TopicCancelDownload)
	f.gw.Status(bg, "default", "thing-c", dep.ID, dmf.StatusCancelRejected, "too late: installing")
	f.gw.Status(bg, "default", "thing-c", dep.ID, dmf.StatusFinished)
	if d := f.s.API.WaitDeployment("thing-c", dep.ID, 10*time.Second, "succeeded"); d.State != "succeeded" {
		t.Fatal(d.State)
	}
	// A status delivered again after the end changes nothing.
	f.gw.Status(bg, "default", "thing-c", dep.ID, dmf.StatusError)
	time.Sleep(300 * time.Millisecond)
	if d := f.s.API.Deployment("thing-c", dep.ID); d.State != "succeeded" {
		t.Fatalf("a late ERROR turned the action %s", d.State)
	}
}

// TestAttributesPingAndRemoval: UPDATE_ATTRIBUTES in its three modes,
// PING answered with the correlation id, THING_REMOVED deletes the device,
// and a device deleted through the API is told THING_DELETED.
func TestAttributesPingAndRemoval(t *testing.T) {
	f := start(t)
	f.create("thing-a", map[string]string{"a": "1", "b": "2"})
	attrs := func(want string) {
		t.Helper()
		servertest.Eventually(t, 10*time.Second, func() error {
			if got := fmt.Sprint(f.device("thing-a").Attributes); got != want {
				return fmt.Errorf("attributes %s, want %s", got, want)
			}
			return nil
		})
	}
	attrs("map[a:1 b:2]")
	f.gw.Attributes(bg, "default", "thing-a", "MERGE", map[string]string{"c": "3"})
	attrs("map[a:1 b:2 c:3]")
	f.gw.Attributes(bg, "default", "thing-a", "REMOVE", map[string]string{"a": ""})
	attrs("map[b:2 c:3]")
	f.gw.Attributes(bg, "default", "thing-a", "REPLACE", map[string]string{"z": "26"})
	attrs("map[z:26]")

	if err := f.gw.Ping(bg, "default", "corr-42"); err != nil {
		t.Fatal(err)
	}
	m, err := f.gw.Next(bg, 10*time.Second, func(m dmfclient.Message) bool { return m.Type == dmf.TypePingResponse })
	if err != nil || m.CorrelationID != "corr-42" || m.Tenant != "default" {
		t.Fatalf("PING_RESPONSE %+v %v", m, err)
	}

	f.gw.Removed(bg, "default", "thing-a")
	servertest.Eventually(t, 10*time.Second, func() error {
		if code, _ := f.s.API.Do("GET", "/api/v1/devices/thing-a", nil); code != 404 {
			return fmt.Errorf("thing-a still there: %d", code)
		}
		return nil
	})
	f.create("thing-b", nil)
	f.s.API.Must(204, "DELETE", "/api/v1/devices/thing-b", nil, nil)
	f.next("thing-b", dmf.TypeThingDeleted)
}

// TestMalformedMessagesAreDeadLettered: what cannot be processed goes to
// the dead-letter queue with the reason; nothing else changes.
func TestMalformedMessagesAreDeadLettered(t *testing.T) {
	f := start(t)
	f.s.API.Upload("fw", "2.0.0", []byte("fw 2"), "")
	f.create("thing-m", nil)
	dep := f.s.API.Assign("thing-m", "fw", "2.0.0", nil)
	f.next("thing-m", dmf.TopicDownloadAndInstall)
	before := f.s.API.Deployment("thing-m", dep.ID)
	status := amqp.Table{"type": "EVENT", "topic": "UPDATE_ACTION_STATUS", "tenant": "default", "thingId": "thing-m"}
	with := func(t amqp.Table, k string, v any) amqp.Table {
		out := amqp.Table{}
		for kk, vv := range t {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	type case_ struct {
		name    string
		headers amqp.Table
		body    string
		reason  string
	}
	cases := []case_{
		{"bad JSON", status, `{"actionId": 1,`, "body is not the expected JSON"},
		{"unknown type", with(status, "type", "REBOOT"), `{}`, "unknown message type"},
		{"unknown topic", with(status, "topic", "SELF_DESTRUCT"), `{}`, "unknown EVENT topic"},
		{"missing type", with(status, "type", nil), `{}`, "missing header type"},
		{"missing tenant", with(status, "tenant", nil), `{}`, "missing header tenant"},
		{"missing thingId", with(status, "thingId", nil), `{}`, "missing header thingId"},
		{"unknown action", status, `{"actionId": 999999, "actionStatus": "FINISHED"}`, "unknown action 999999"},
		{"another thing's action", with(status, "thingId", "thing-other"), fmt.Sprintf(`{"actionId": %d, "actionStatus": "FINISHED"}`, dep.ID), "unknown action"},
		{"unknown status", status, fmt.Sprintf(`{"actionId": %d, "actionStatus": "EXPLODED"}`, dep.ID), "unknown actionStatus"},
		{"unknown tenant", with(with(status, "tenant", "nobody"), "type", "THING_CREATED"), `{}`, "cannot register"},
	}
	for _, c := range cases {
		if err := f.gw.Send(bg, c.headers, []byte(c.body), ""); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := amqp.Dial(f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	var mu sync.Mutex
	reasons := []string{}
	servertest.Eventually(t, 15*time.Second, func() error {
		for {
			d, ok, err := ch.Get(f.n.DeadLetter, true)
			if err != nil || !ok {
				break
			}
			r, _ := d.Headers["x-flotilla-reason"].(string)
			mu.Lock()
			reasons = append(reasons, r)
			mu.Unlock()
		}
		if len(reasons) < len(cases) {
			return fmt.Errorf("%d of %d dead-lettered: %q", len(reasons), len(cases), reasons)
		}
		return nil
	})
	// Different things' messages are processed side by side: match the
	// reasons in any order, the more specific (longer) expectations first,
	// so that "unknown action" cannot take "unknown actionStatus"'s reason.
	byLength := slices.Clone(cases)
	slices.SortStableFunc(byLength, func(a, b case_) int { return len(b.reason) - len(a.reason) })
	used := make([]bool, len(reasons))
	for _, c := range byLength {
		found := false
		for i, r := range reasons {
			if !used[i] && strings.Contains(r, c.reason) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("%s: no dead-letter reason says %q (reasons %q)", c.name, c.reason, reasons)
		}
	}
	if d := f.s.API.Deployment("thing-m", dep.ID); d.State != "pending" || len(d.History) != len(before.History) {
		t.Fatalf("the deployment changed: %s, %d history entries", d.State, len(d.History))
	}
	if code, _ := f.s.API.Do("GET", "/api/v1/devices/thing-other", nil); code != 404 {
		t.Fatalf("thing-other exists: %d", code)
	}
}

// TestSupersedingAssignmentIsOneMultiAction: a new assignment while the
// thing works on another leaves it two open actions — the old one being
// canceled, the new one — and it is told both in one MULTI_ACTION.
func TestSupersedingAssignmentIsOneMultiAction(t *testing.T) {
	f := start(t)
	f.s.API.Upload("fw", "2.0.0", []byte("fw 2"), "")
	f.s.API.Upload("fw", "3.0.0", []byte("fw 3"), "")
	f.create("thing-s", nil)
	old := f.s.API.Assign("thing-s", "fw", "2.0.0", nil)
	f.next("thing-s", dmf.TopicDownloadAndInstall)
	f.gw.Status(bg, "default", "thing-s", old.ID, dmf.StatusRunning)
	dep := f.s.API.Assign("thing-s", "fw", "3.0.0", nil)
	m := f.next("thing-s", dmf.TopicMultiAction)
	var elems []struct {
		Topic  string
		Weight int
		Action dmf.DownloadRequest
	}
	if err := json.Unmarshal(m.Body, &elems); err != nil {
		t.Fatalf("MULTI_ACTION body %s: %v", m.Body, err)
	}
	if len(elems) != 2 || elems[0].Topic != dmf.TopicCancelDownload || elems[0].Action.ActionID != old.ID ||
		elems[1].Topic != dmf.TopicDownloadAndInstall || elems[1].Action.ActionID != dep.ID || len(elems[1].Action.SoftwareModules) != 1 ||
		elems[0].Weight <= elems[1].Weight {
		t.Fatalf("MULTI_ACTION %s", m.Body)
	}
	if err := fetch(elems[1].Action); err != nil {
		t.Fatal(err)
	}
	f.gw.Status(bg, "default", "thing-s", old.ID, dmf.StatusCanceled)
	f.s.API.WaitDeployment("thing-s", old.ID, 10*time.Second, "canceled")
	f.quiet("thing-s", time.Second) // the new action was told already
	f.gw.Status(bg, "default", "thing-s", dep.ID, dmf.StatusFinished)
	f.s.API.WaitDeployment("thing-s", dep.ID, 10*time.Second, "succeeded")
}

// TestTenantLinkTakesOnlyItsTenant: a link given a tenant (its own
// virtual host and credentials) registers that tenant's things and
// dead-letters messages naming another.
func TestTenantLinkTakesOnlyItsTenant(t *testing.T) {
	url := testtool.RabbitMQ(t)
	n := newNames(t, url)
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		cfg := config(n, url)
		cfg.Tenant, cfg.Name = "acme", "acme"
		c.DMF = []dmf.Config{cfg}
	}))
	s.API.Must(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"}, nil)
	waitLinked(t, s)
	gw, err := dmfclient.Dial(url, n.Exchange, n.Reply)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	gw.Created(bg, "default", "intruder", "", nil)
	gw.Created(bg, "ACME", "thing-1", "", nil)
	servertest.Eventually(t, 10*time.Second, func() error {
		var d struct{ DMF *struct{ Link string } }
		if code, b := s.API.Do("GET", "/api/v1/devices/thing-1?tenant=acme", nil); code != 200 {
			return fmt.Errorf("acme's thing-1: %d %s", code, b)
		} else if json.Unmarshal(b, &d); d.DMF == nil || d.DMF.Link != "acme" {
			return fmt.Errorf("acme's thing-1: %s", b)
		}
		return nil
	})
	if code, _ := s.API.Do("GET", "/api/v1/devices/intruder", nil); code != 404 {
		t.Fatalf("a message for tenant default over acme's link registered a device: %d", code)
	}
	conn, _ := amqp.Dial(url)
	defer conn.Close()
	ch, _ := conn.Channel()
	servertest.Eventually(t, 10*time.Second, func() error {
		d, ok, err := ch.Get(n.DeadLetter, true)
		if err != nil || !ok {
			return fmt.Errorf("nothing dead-lettered yet (%v)", err)
		}
		if r, _ := d.Headers["x-flotilla-reason"].(string); !strings.Contains(r, `tenant "default" is not served on this link`) {
			return fmt.Errorf("reason %q", r)
		}
		return nil
	})
}
