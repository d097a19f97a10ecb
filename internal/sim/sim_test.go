package sim_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/sim"
)

const gateway = "flt_sim_test_gateway_token_0123456789"

func TestLabelSpread(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want map[string]int
	}{
		{"region=eu:60,us:40", 500, map[string]int{"eu": 300, "us": 200}},
		{"region=eu:1,us:1,ap:1", 9, map[string]int{"eu": 3, "us": 3, "ap": 3}},
		{"tier=gold", 7, map[string]int{"gold": 7}},
		{"x=a:0,b:5", 10, map[string]int{"b": 10}},
	} {
		ls, err := sim.ParseLabelSpread(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		f, err := sim.New(sim.Config{Server: "http://x", GatewayToken: "g", Devices: tc.n, Labels: []sim.LabelSpread{ls}})
		if err != nil {
			t.Fatal(err)
		}
		got := f.LabelCounts(ls.Key)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s over %d devices: %v, want %v", tc.in, tc.n, got, tc.want)
		}
	}
	for _, bad := range []string{"", "region", "region=", "region=eu:x", "region=eu:-1", "region=:3"} {
		if _, err := sim.ParseLabelSpread(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]sim.Config{
		"no server":     {GatewayToken: "g", Devices: 1},
		"no devices":    {Server: "http://x", GatewayToken: "g"},
		"no gateway":    {Server: "http://x", Devices: 1},
		"push no token": {Server: "http://x", Devices: 1, Push: true},
		"rate > 1":      {Server: "http://x", GatewayToken: "g", Devices: 1, FailRate: 1.5},
		"rates > fleet": {Server: "http://x", GatewayToken: "g", Devices: 10, FailRate: 0.6, OfflineRate: 0.5},
		"not http":      {Server: "ftp://x", GatewayToken: "g", Devices: 1},
		"max conns < 0": {Server: "http://x", GatewayToken: "g", Devices: 1, MaxConns: -1},
	} {
		if _, err := sim.New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

type rolloutView struct {
	ID     string         `json:"id"`
	Status string         `json:"status"`
	Reason string         `json:"reason"`
	Counts map[string]int `json:"counts"`
}

// TestSimulatedFleetMatchesRollout is the acceptance test: 500 simulated
// devices, 10% of which fail to install, 5% unhealthy; the rollout's counts
// equal the simulator's own tally.
func TestSimulatedFleetMatchesRollout(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.GatewayToken, c.SchedulerTick, c.PollInterval = gateway, 200*time.Millisecond, time.Second
	}))
	s.API.Upload("kiosk-fw", "2.0.0", []byte(strings.Repeat("firmware 2.0.0\n", 20000)), "")
	fleet, err := sim.New(sim.Config{Server: s.URL, GatewayToken: gateway, Devices: 500, Poll: 500 * time.Millisecond,
		FailRate: 0.10, UnhealthyRate: 0.05, SlowDownloadRate: 0.02, SlowRate: 2 << 20, InstallTime: 10 * time.Millisecond, Seed: 7,
		Labels: []sim.LabelSpread{{Key: "region", Values: []string{"eu", "us"}, Weights: []int{60, 40}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	servertest.Eventually(t, 60*time.Second, func() error {
		if n := fleet.Tally().Registered; n != 500 {
			return fmt.Errorf("%d devices registered", n)
		}
		return nil
	})
	var sel struct{ Items []struct{ ID string } }
	s.API.Must(200, "GET", "/api/v1/devices?selector=region%3Deu&limit=1000", nil, &sel)
	if len(sel.Items) != 300 {
		t.Fatalf("%d devices labelled region=eu, want 300", len(sel.Items))
	}
	var ro rolloutView
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "sim", "artifact": map[string]string{"name": "kiosk-fw", "version": "2.0.0"},
		"selector": "region in (eu,us)", "waves": 5, "start": true,
		"policy": map[string]any{"error_threshold": 40, "success_threshold": 50, "min_success_ratio": 0.8}}, &ro)
	id := ro.ID
	servertest.Eventually(t, 120*time.Second, func() error {
		ro = rolloutView{}
		s.API.Must(200, "GET", "/api/v1/rollouts/"+id, nil, &ro)
		if ro.Status == "running" || ro.Status == "ready" {
			return fmt.Errorf("rollout %s, counts %v", ro.Status, ro.Counts)
		}
		return nil
	})
	tally := fleet.Tally()
	t.Logf("rollout %s: %v; fleet: succeeded %d failed %d (unhealthy %d)", ro.Status, ro.Counts, tally.Succeeded, tally.Failed, tally.Unhealthy)
	if ro.Status != "completed" {
		t.Fatalf("rollout ended %s (%s)", ro.Status, ro.Reason)
	}
	if int64(ro.Counts["succeeded"]) != tally.Succeeded || int64(ro.Counts["failed"]) != tally.Failed {
		t.Fatalf("server counts %v, the fleet's own tally succeeded %d failed %d", ro.Counts, tally.Succeeded, tally.Failed)
	}
	if tally.Failed != 75 || tally.Unhealthy != 25 || tally.Succeeded != 425 || tally.HashMismatch != 0 || tally.Downloads != 500 {
		t.Fatalf("tally %+v, want 50 install failures + 25 unhealthy of 500", tally)
	}
	if tally.Versions["2.0.0"] != 425 || tally.Versions["1.0.0"] != 75 {
		t.Fatalf("versions %v", tally.Versions)
	}
}

// TestSimulatedPushNodes: --push runs push nodes the server delivers to;
// the push rollout's counts equal the nodes' own tally.
func TestSimulatedPushNodes(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond; c.PushWorkers = 16 }))
	s.API.Upload("node-fw", "2.0.0", []byte(strings.Repeat("node firmware\n", 5000)), "")
	fleet, err := sim.New(sim.Config{Server: s.URL, APIToken: servertest.AdminToken, Devices: 60, Push: true, FailRate: 0.1,
		InstallTime: time.Millisecond, Labels: []sim.LabelSpread{{Key: "kind", Values: []string{"node"}, Weights: []int{1}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	servertest.Eventually(t, 30*time.Second, func() error {
		if n := fleet.Tally().Registered; n != 60 {
			return fmt.Errorf("%d nodes registered", n)
		}
		return nil
	})
	var ro rolloutView
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "push", "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"},
		"selector": "kind=node", "waves": 2, "delivery": "push", "start": true, "policy": map[string]any{"error_threshold": 50, "success_threshold": 50, "min_success_ratio": 0.5}}, &ro)
	id := ro.ID
	servertest.Eventually(t, 60*time.Second, func() error {
		ro = rolloutView{}
		s.API.Must(200, "GET", "/api/v1/rollouts/"+id, nil, &ro)
		if ro.Status == "running" {
			return fmt.Errorf("rollout %s %v", ro.Status, ro.Counts)
		}
		return nil
	})
	tally := fleet.Tally()
	if ro.Status != "completed" || int64(ro.Counts["succeeded"]) != tally.Succeeded || int64(ro.Counts["failed"]) != tally.Failed || tally.Succeeded != 54 {
		t.Fatalf("rollout %s %v; nodes' tally %+v", ro.Status, ro.Counts, tally)
	}
}

// TestOfflineAndCancels: offline devices register and go silent; devices
// that reject a cancel keep their deployment, the others end it canceled.
func TestOfflineAndCancels(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.GatewayToken = gateway }))
	s.API.Upload("fw", "2.0.0", []byte("v2"), "")
	fleet, err := sim.New(sim.Config{Server: s.URL, GatewayToken: gateway, Devices: 40, Poll: 200 * time.Millisecond,
		OfflineRate: 0.25, RejectCancelRate: 0.5, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	servertest.Eventually(t, 30*time.Second, func() error {
		if n := fleet.Tally().Registered; n != 40 {
			return fmt.Errorf("%d registered", n)
		}
		return nil
	})
	// Every device gets a deployment whose maintenance window is hours
	// away: online devices download and wait; offline ones never hear of it.
	window := map[string]any{"maintenance_window": map[string]string{
		"schedule": fmt.Sprintf("0 0 %d * * ?", (time.Now().UTC().Hour()+12)%24), "duration": "00:30:00", "timezone": "UTC"}}
	var deps = map[string]int64{}
	for _, id := range fleet.DeviceIDs() {
		deps[id] = s.API.Assign(id, "fw", "2.0.0", window).ID
	}
	servertest.Eventually(t, 30*time.Second, func() error {
		n := 0
		for id, dep := range deps {
			if s.API.Deployment(id, dep).State == "downloaded" {
				n++
			}
		}
		if n != 30 {
			return fmt.Errorf("%d downloaded", n)
		}
		return nil
	})
	for id, dep := range deps {
		s.API.Do("POST", fmt.Sprintf("/api/v1/devices/%s/deployments/%d/cancel", id, dep), nil)
	}
	servertest.Eventually(t, 30*time.Second, func() error {
		tl := fleet.Tally()
		if tl.Canceled+tl.Rejected != 30 {
			return fmt.Errorf("cancels answered: %d accepted, %d rejected", tl.Canceled, tl.Rejected)
		}
		return nil
	})
	states := map[string]int{}
	for id, dep := range deps {
		states[s.API.Deployment(id, dep).State]++
	}
	tl := fleet.Tally()
	// Deployments the offline devices never fetched are canceled at once.
	if tl.Offline != 10 || tl.Rejected == 0 || tl.Canceled == 0 || states["canceled"] != int(tl.Canceled)+10 || states["downloaded"] != int(tl.Rejected) {
		t.Fatalf("server states %v; fleet %+v", states, tl)
	}
}

func FuzzParseLabelSpread(f *testing.F) {
	for _, s := range []string{"region=eu:60,us:40", "a=b", "x=:1", "k=v:99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := sim.ParseLabelSpread(s)
		if err != nil {
			return
		}
		if ls.Key == "" || len(ls.Values) == 0 || len(ls.Values) != len(ls.Weights) {
			t.Fatalf("%q parsed to %+v", s, ls)
		}
		fl, err := sim.New(sim.Config{Server: "http://x", GatewayToken: "g", Devices: 13, Labels: []sim.LabelSpread{ls}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range fl.LabelCounts(ls.Key) {
			n += c
		}
		if n != 13 {
			t.Fatalf("%q spread %d of 13 devices", s, n)
		}
	})
}
