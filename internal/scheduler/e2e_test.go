package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/updater"
)

// fleetDevice is an in-process SDK device that records its own outcome.
type fleetDevice struct {
	updater.DefaultFetcher
	id   string
	fail bool
	mu   *sync.Mutex
	seen map[string]string // device -> "succeeded" | "failed"
}

func (d *fleetDevice) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		d.seen[d.id] = "failed"
		return errors.New("injected failure")
	}
	d.seen[d.id] = "succeeded"
	return nil
}

type rolloutView struct {
	ID     string         `json:"id"`
	Status string         `json:"status"`
	Reason string         `json:"reason"`
	Counts map[string]int `json:"counts"`
	Waves  []struct {
		Index  int            `json:"index"`
		Status string         `json:"status"`
		Counts map[string]int `json:"counts"`
	} `json:"waves"`
}

// startFleet runs n SDK devices against the servers round-robin; every
// failEvery-th device fails to install.
func startFleet(t *testing.T, servers []*servertest.Server, n, failEvery int) (*sync.Mutex, map[string]string) {
	var mu sync.Mutex
	seen := map[string]string{}
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("dev-%03d", i)
		s := servers[i%len(servers)]
		tok := s.API.CreateDevice(id, map[string]string{"fleet": "kiosk"})
		h := &fleetDevice{id: id, fail: failEvery > 0 && i%failEvery == failEvery-1, mu: &mu, seen: seen}
		s.StartDevice(t, updater.Config{ControllerID: id, Token: tok, CurrentVersion: "1.0.0", Handler: h, StateDir: filepath.Join(dir, id),
			FirstCheck: updater.Interval{Min: time.Millisecond, Max: 300 * time.Millisecond}, ActiveInterval: 200 * time.Millisecond,
			ProgressInterval: time.Hour})
	}
	return &mu, seen
}

func TestRolloutWithErrorGate(t *testing.T) {
	for _, tc := range []struct {
		minRatio  float64
		want      string
		writeUpTo int
	}{{0.85, "completed", 0}, {0.95, "partial", 0}, {0.85, "completed", 50}} {
		// With writeUpTo 50, the rollout of 200 devices writes its waves
		// one by one after it started.
		t.Run(fmt.Sprint("min_success_ratio=", tc.minRatio, ",write_whole_up_to=", tc.writeUpTo), func(t *testing.T) {
			t.Parallel()
			s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
				c.SchedulerTick = 200 * time.Millisecond
				c.RolloutWriteWholeUpTo = tc.writeUpTo
			}))
			s.API.Upload("kiosk-fw", "2.0.0", []byte(strings.Repeat("firmware 2.0.0 ", 1000)), "")
			mu, seen := startFleet(t, []*servertest.Server{s}, 200, 10)

			var ro rolloutView
			s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{
				"name": "spring", "artifact": map[string]string{"name": "kiosk-fw", "version": "2.0.0"}, "selector": "fleet=kiosk", "waves": 5,
				"policy": map[string]any{"success_threshold": 80, "error_threshold": 5, "error_action": "pause", "min_success_ratio": tc.minRatio},
			}, &ro)
			if ro.Status != "ready" || len(ro.Waves) != 5 || ro.Waves[0].Counts["scheduled"] != 40 {
				t.Fatalf("created rollout = %+v", ro)
			}
			s.API.Must(200, "POST", "/api/v1/rollouts/"+ro.ID+"/start", nil, &ro)

			pauses := 0
			deadline := time.Now().Add(120 * time.Second)
			for {
				ro = getRollout(s, ro.ID)
				if ro.Status == "paused" {
					if !strings.Contains(ro.Reason, "error gate") {
						t.Fatalf("paused for %q", ro.Reason)
					}
					pauses++
					s.API.Must(200, "POST", "/api/v1/rollouts/"+ro.ID+"/resume", nil, nil)
					continue
				}
				if ro.Status != "running" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("rollout still %s: %+v", ro.Status, ro)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if pauses == 0 {
				t.Fatal("the error gate never paused the rollout")
			}
			if ro.Status != tc.want {
				t.Fatalf("final status %s (%s), want %s", ro.Status, ro.Reason, tc.want)
			}
			// The server's counts equal the devices' own records.
			mu.Lock()
			own := map[string]int{}
			for _, v := range seen {
				own[v]++
			}
			mu.Unlock()
			if ro.Counts["succeeded"] != own["succeeded"] || ro.Counts["failed"] != own["failed"] || own["succeeded"] != 180 || own["failed"] != 20 {
				t.Fatalf("server counts %v, devices' own records %v", ro.Counts, own)
			}
			for _, w := range ro.Waves {
				if w.Counts["succeeded"] != 36 || w.Counts["failed"] != 4 {
					t.Fatalf("wave %d counts %v", w.Index, w.Counts)
				}
			}
			var devs struct {
				Items []struct {
					DeviceID string `json:"device_id"`
					State    string `json:"state"`
				}
			}
			s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID+"/devices?limit=1000", nil, &devs)
			mu.Lock()
			defer mu.Unlock()
			for _, d := range devs.Items {
				if seen[d.DeviceID] != d.State {
					t.Fatalf("%s: server says %s, the device says %s", d.DeviceID, d.State, seen[d.DeviceID])
				}
			}
			var runs struct{ Items []struct{ Wave int } }
			s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID+"/runs", nil, &runs)
			if len(runs.Items) < 5+pauses-1 {
				t.Fatalf("%d runs recorded for 5 waves and %d pauses", len(runs.Items), pauses)
			}
		})
	}
}

// getRollout reads a rollout into a fresh value (decoding into a reused one
// would merge stale map keys).
func getRollout(s *servertest.Server, id string) rolloutView {
	var ro rolloutView
	s.API.Must(200, "GET", "/api/v1/rollouts/"+id, nil, &ro)
	return ro
}
