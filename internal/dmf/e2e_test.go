package dmf_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/dmf/dmfclient"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

type names = testtool.AMQPNames

func newNames(t *testing.T, url string) names { return testtool.NewAMQPNames(t, url, "flotilla-test") }

func config(n names, url string) dmf.Config {
	return dmf.Config{URL: url, Exchange: n.Exchange, Queue: n.Queue, Poll: 200 * time.Millisecond}
}

// fixture is a server with a DMF link and a gateway on the same broker.
type fixture struct {
	t   *testing.T
	s   *servertest.Server
	gw  *dmfclient.Gateway
	n   names
	url string
}

func start(t *testing.T, opts ...servertest.Option) *fixture {
	t.Helper()
	url := testtool.RabbitMQ(t)
	n := newNames(t, url)
	opts = append([]servertest.Option{servertest.WithConfig(func(c *server.Config) {
		c.DMF = []dmf.Config{config(n, url)}
		c.SchedulerTick = 100 * time.Millisecond
	})}, opts...)
	s := servertest.Start(t, opts...)
	waitLinked(t, s)
	gw, err := dmfclient.Dial(url, n.Exchange, n.Reply)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return &fixture{t: t, s: s, gw: gw, n: n, url: url}
}

func waitLinked(t *testing.T, s *servertest.Server) {
	t.Helper()
	servertest.Eventually(t, 30*time.Second, func() error { return s.Srv.DMF[0].Ready() })
}

var bg = context.Background()

// next waits for the next message about a thing with a topic (or type).
func (f *fixture) next(thing, topic string) dmfclient.Message {
	f.t.Helper()
	m, err := f.gw.Next(bg, 15*time.Second, func(m dmfclient.Message) bool {
		return m.Thing == thing && (m.Topic == topic || m.Type == topic)
	})
	if err != nil {
		f.t.Fatalf("waiting for %s to %s: %v", topic, thing, err)
	}
	return m
}

// quiet fails when a message about thing arrives within d.
func (f *fixture) quiet(thing string, d time.Duration) {
	f.t.Helper()
	if m, err := f.gw.Next(bg, d, func(m dmfclient.Message) bool { return m.Thing == thing }); err == nil {
		f.t.Fatalf("unexpected message to %s: %s %s %s", thing, m.Type, m.Topic, m.Body)
	}
}

// create registers a thing and waits until the server has it.
func (f *fixture) create(thing string, attrs map[string]string) {
	f.t.Helper()
	if err := f.gw.Created(bg, "default", thing, "", attrs); err != nil {
		f.t.Fatal(err)
	}
	servertest.Eventually(f.t, 10*time.Second, func() error {
		if code, _ := f.s.API.Do("GET", "/api/v1/devices/"+thing, nil); code != 200 {
			return fmt.Errorf("device %s: %d", thing, code)
		}
		return nil
	})
}

type deviceView struct {
	ID         string
	Version    string
	Labels     map[string]string
	Attributes map[string]string
	DMF        *struct{ Link, Exchange string }
}

func (f *fixture) device(id string) deviceView {
	var d deviceView
	f.s.API.Must(200, "GET", "/api/v1/devices/"+id, nil, &d)
	return d
}

// fetch downloads every artifact of a request the way a gateway does, with
// the target token, and checks the hashes.
func fetch(req dmf.DownloadRequest) error {
	for _, m := range req.SoftwareModules {
		for _, a := range m.Artifacts {
			r, _ := http.NewRequest("GET", a.URLs["HTTP"], nil)
			r.Header.Set("Authorization", "TargetToken "+req.TargetSecurityToken)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				return err
			}
			h := sha1.New()
			_, err = io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s: %s", a.URLs["HTTP"], resp.Status)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != a.Hashes["sha1"] {
				return fmt.Errorf("%s: sha1 %s, want %s", a.Filename, got, a.Hashes["sha1"])
			}
		}
	}
	if len(req.SoftwareModules) == 0 {
		return errors.New("no software modules")
	}
	return nil
}

// installer answers every DOWNLOAD_AND_INSTALL as a healthy device would,
// and counts what each thing was told.
type installer struct {
	mu    sync.Mutex
	told  map[string]map[string]int // thing -> topic -> count
	errs  []error
	retry func() *dmfclient.Gateway // a gateway to send on, after a reconnect
}

func (in *installer) run(gw *dmfclient.Gateway) {
	for m := range gw.Messages() {
		in.mu.Lock()
		if in.told[m.Thing] == nil {
			in.told[m.Thing] = map[string]int{}
		}
		in.told[m.Thing][m.Topic]++
		in.mu.Unlock()
		if m.Topic != dmf.TopicDownloadAndInstall {
			continue
		}
		req, err := m.Download()
		if err == nil {
			err = fetch(req)
		}
		status := dmf.StatusFinished
		if err != nil {
			in.mu.Lock()
			in.errs = append(in.errs, err)
			in.mu.Unlock()
			status = dmf.StatusError
		}
		for _, s := range []string{dmf.StatusRunning, status} {
			for g := gw; ; {
				if err := g.Status(bg, m.Tenant, m.Thing, req.ActionID, s, "simulated"); err == nil {
					break
				}
				if in.retry == nil {
					return
				}
				g = in.retry()
			}
		}
	}
}

func (in *installer) count(thing, topic string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.told[thing][topic]
}
