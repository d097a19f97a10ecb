package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

// TestSimDMF: `flotilla sim --dmf` runs things behind a DMF gateway; they
// register with their labels, go through a rollout over the broker (two
// of them failing as dealt) and the tally matches the server's counts.
func TestSimDMF(t *testing.T) {
	broker := testtool.RabbitMQ(t)
	names := testtool.NewAMQPNames(t, broker, "flotilla-sim")
	exchange, queue := names.Exchange, names.Queue
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.DMF = []dmf.Config{{URL: broker, Exchange: exchange, Queue: queue, Poll: 200 * time.Millisecond}}
		c.SchedulerTick = 100 * time.Millisecond
	}))
	servertest.Eventually(t, 30*time.Second, func() error { return s.Srv.DMF[0].Ready() })
	s.API.Upload("fw", "2.0.0", []byte(strings.Repeat("fw 2 ", 2000)), "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"sim", "--server", s.URL, "--dmf", broker, "--dmf-exchange", exchange, "--devices", "20",
			"--fail-rate", "0.1", "--labels", "fleet=sim", "--install-time", "10ms", "--json"}, testEnv(), &out, &errOut)
	}()
	servertest.Eventually(t, 30*time.Second, func() error {
		var devs struct{ Items []struct{ ID string } }
		s.API.Must(200, "GET", "/api/v1/devices?selector=fleet%3Dsim&limit=100", nil, &devs)
		if len(devs.Items) != 20 {
			return fmt.Errorf("%d DMF devices registered", len(devs.Items))
		}
		return nil
	})
	var ro struct {
		ID, Status string
		Counts     map[string]int
	}
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "sim", "artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"selector": "fleet=sim", "waves": 2, "policy": map[string]any{"grace_seconds": 0, "min_success_ratio": 0.5, "error_threshold": 50, "success_threshold": 80}, "start": true}, &ro)
	servertest.Eventually(t, 60*time.Second, func() error {
		s.API.Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" && ro.Status != "partial" {
			return fmt.Errorf("rollout %s %v", ro.Status, ro.Counts)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("sim: %v\n%s", err, errOut.String())
	}
	var tally struct {
		Registered, Succeeded, Failed, PollErrors int
		Versions                                  map[string]int
	}
	js := out.String()[strings.Index(out.String(), "{"):]
	if err := json.Unmarshal([]byte(js), &tally); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if tally.Registered != 20 || tally.Succeeded != 18 || tally.Failed != 2 || tally.PollErrors != 0 || tally.Versions["2.0.0"] != 18 {
		t.Fatalf("tally %+v", tally)
	}
	if ro.Counts["succeeded"] != 18 || ro.Counts["failed"] != 2 {
		t.Fatalf("the server counts %v", ro.Counts)
	}
}
