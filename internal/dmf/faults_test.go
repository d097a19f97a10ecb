package dmf_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/dmf/dmfclient"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/storetest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
	"github.com/flotilla-ota/flotilla/updater"
)

// heldDevice installs when the test lets it.
type heldDevice struct {
	updater.DefaultFetcher
	started chan<- string
	release <-chan struct{}
	id      string
}

func (h heldDevice) Apply(ctx context.Context, _ *updater.Update, _ *updater.Payload) error {
	h.started <- h.id
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestBrokerRestartMidRollout: a rollout of three waves — things, DDI
// devices, things — and the broker restarts while the second wave runs.
// The third wave is released while the broker is down; its messages wait
// in the outbox and go out once the server reconnects. Every thing is told
// exactly once and the rollout completes.
func TestBrokerRestartMidRollout(t *testing.T) {
	b := testtool.StartBroker(t)
	n := newNames(t, b.URL)
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.DMF = []dmf.Config{config(n, b.URL)}
		c.SchedulerTick = 100 * time.Millisecond
	}))
	waitLinked(t, s)
	s.API.Upload("fw", "2.0.0", []byte("firmware 2"), "")

	// The gateway reconnects after the restart, as real ones do.
	var mu sync.Mutex
	gw, err := dmfclient.Dial(b.URL, n.Exchange, n.Reply)
	if err != nil {
		t.Fatal(err)
	}
	current := func() *dmfclient.Gateway { mu.Lock(); defer mu.Unlock(); return gw }
	var dialMu sync.Mutex // one reconnect at a time
	reconnect := func() *dmfclient.Gateway {
		dialMu.Lock()
		defer dialMu.Unlock()
		for current().Dialed() && t.Context().Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		for t.Context().Err() == nil {
			if g, err := dmfclient.Dial(b.URL, n.Exchange, n.Reply); err == nil {
				mu.Lock()
				gw = g
				mu.Unlock()
				return g
			}
			time.Sleep(200 * time.Millisecond)
		}
		return current()
	}
	t.Cleanup(func() { current().Close() })
	f := &fixture{t: t, s: s, gw: gw, n: n, url: b.URL}

	things := map[string]string{"thing-a1": "1", "thing-a2": "1", "thing-c1": "3", "thing-c2": "3"}
	for id, step := range things {
		f.create(id, nil)
		s.API.Must(200, "PATCH", "/api/v1/devices/"+id, map[string]any{"labels": map[string]string{"fleet": "x", "step": step}}, nil)
	}
	started, release := make(chan string, 4), make(chan struct{})
	dir := t.TempDir()
	for _, id := range []string{"ddi-b1", "ddi-b2"} {
		tok := s.API.CreateDevice(id, map[string]string{"fleet": "x", "step": "2"})
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0", StateDir: filepath.Join(dir, id),
			Handler: heldDevice{started: started, release: release, id: id}})
	}
	in := &installer{told: map[string]map[string]int{}, retry: reconnect}
	go func() {
		for g := current(); ; g = reconnect() {
			in.run(g)
			if t.Context().Err() != nil {
				return
			}
		}
	}()

	var ro rolloutView
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "restart", "artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"selector": "fleet=x", "groups": []map[string]string{{"selector": "step=1"}, {"selector": "step=2"}, {"selector": "step=3"}},
		"policy": map[string]any{"grace_seconds": 0}, "start": true}, &ro)
	// The DDI wave is installing: restart the broker, and let the wave
	// finish while it is down.
	for range 2 {
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			t.Fatal("the DDI wave did not start")
		}
	}
	b.Stop()
	close(release)
	servertest.Eventually(t, 30*time.Second, func() error {
		var list struct {
			Items []struct {
				ID         string
				Deployment *struct{ State string }
			}
		}
		s.API.Must(200, "GET", "/api/v1/devices?selector=step%3D3", nil, &list)
		for _, d := range list.Items {
			if d.Deployment == nil || d.Deployment.State != "pending" {
				return fmt.Errorf("%s: %+v", d.ID, d.Deployment)
			}
		}
		if len(list.Items) != 2 {
			return fmt.Errorf("%d devices in step 3", len(list.Items))
		}
		return nil
	})
	if err := s.Srv.DMF[0].Ready(); err == nil {
		t.Fatal("the link reports ready while the broker is down")
	}
	b.Start()
	servertest.Eventually(t, 90*time.Second, func() error {
		s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	time.Sleep(time.Second) // a duplicate would arrive now
	for id := range things {
		if c := in.count(id, dmf.TopicDownloadAndInstall); c != 1 {
			t.Errorf("%s was told DOWNLOAD_AND_INSTALL %d times, want once", id, c)
		}
		if v := f.device(id).Version; v != "2.0.0" {
			t.Errorf("%s runs %q", id, v)
		}
	}
}

// TestTwoReplicasShareTheQueue: two replicas on one Postgres consume the
// same queue and publish the same outbox; every thing is told once, and
// the statuses each replica receives move the same rollout.
func TestTwoReplicasShareTheQueue(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	url := testtool.RabbitMQ(t)
	n := newNames(t, url)
	blobs := filepath.Join(t.TempDir(), "blobs")
	// A program embedding replica a counts what its link processes, next
	// to the server's own metrics.
	var countedByA atomic.Int64
	countA := func(_, direction, kind, outcome string) {
		if direction == "in" && kind == dmf.TopicUpdateActionStatus && outcome == "processed" {
			countedByA.Add(1)
		}
	}
	replica := func(id string) *servertest.Server {
		return servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
			c.DatabaseURL, c.BlobDir, c.ReplicaID = dsn, blobs, id
			c.DMF = []dmf.Config{config(n, url)}
			if id == "replica-a" {
				c.DMF[0].Count = countA
			}
			c.SchedulerTick = 100 * time.Millisecond
		}))
	}
	a, b := replica("replica-a"), replica("replica-b")
	waitLinked(t, a)
	waitLinked(t, b)
	gw, err := dmfclient.Dial(url, n.Exchange, n.Reply)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	f := &fixture{t: t, s: a, gw: gw, n: n, url: url}
	a.API.Upload("fw", "2.0.0", []byte("firmware 2"), "")
	var things []string
	for i := range 12 {
		id := fmt.Sprintf("thing-%02d", i)
		things = append(things, id)
		f.create(id, map[string]string{"i": fmt.Sprint(i)})
		a.API.Must(200, "PATCH", "/api/v1/devices/"+id, map[string]any{"labels": map[string]string{"fleet": "two"}}, nil)
	}
	in := &installer{told: map[string]map[string]int{}}
	go in.run(gw)
	var ro rolloutView
	b.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "two", "artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"selector": "fleet=two", "waves": 4, "policy": map[string]any{"grace_seconds": 0}, "start": true}, &ro)
	servertest.Eventually(t, 60*time.Second, func() error {
		a.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s", ro.Status)
		}
		return nil
	})
	time.Sleep(time.Second)
	for _, id := range things {
		if c := in.count(id, dmf.TopicDownloadAndInstall); c != 1 {
			t.Errorf("%s was told DOWNLOAD_AND_INSTALL %d times, want once", id, c)
			_, body := a.API.Do("GET", "/api/v1/devices/"+id+"/deployments", nil)
			t.Logf("%s", body)
			_, body = a.API.Do("GET", "/api/v1/devices/"+id, nil)
			t.Logf("%s", body)
		}
	}
	// One consumer group: the broker dealt the statuses to both.
	const processed = `flotilla_dmf_messages_total{direction="in",kind="UPDATE_ACTION_STATUS",link="default",outcome="processed"}`
	na, nb := a.Metric(t, processed), b.Metric(t, processed)
	if got := countedByA.Load(); float64(got) != na {
		t.Errorf("the embedding program counted %d statuses on replica a, its metrics %v", got, na)
	}
	if na == 0 || nb == 0 || na+nb != 24 {
		t.Errorf("statuses processed: %v by replica a, %v by b; want 24 shared by both", na, nb)
		for _, r := range []*servertest.Server{a, b} {
			resp, _ := http.Get(r.URL + "/metrics")
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(l, "flotilla_dmf") {
					t.Log(l)
				}
			}
		}
	}
}
