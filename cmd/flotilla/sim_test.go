package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
)

// TestSimCommand runs `flotilla sim` against a server and reads its final
// tally.
func TestSimCommand(t *testing.T) {
	const gw = "flt_sim_cmd_gateway_token_0123456789"
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.GatewayToken = gw }))
	var out, errOut strings.Builder
	err := run(context.Background(), []string{"sim", "--server", s.URL, "--devices", "25", "--poll", "200ms", "--duration", "3s", "--json",
		"--labels", "region=eu:3,us:2", "--prefix", "cmd-"}, testEnv("FLOTILLA_GATEWAY_TOKEN="+gw), &out, &errOut)
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, errOut.String())
	}
	var tally struct {
		Registered int
		Polls      int
		PollErrors int
	}
	js := out.String()[strings.Index(out.String(), "{"):]
	if err := json.Unmarshal([]byte(js), &tally); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if tally.Registered != 25 || tally.Polls < 25 || tally.PollErrors != 0 {
		t.Fatalf("tally %+v", tally)
	}
	var devs struct{ Items []struct{ ID string } }
	s.API.Must(200, "GET", "/api/v1/devices?selector=region%3Dus&limit=100", nil, &devs)
	if len(devs.Items) != 10 || !strings.HasPrefix(devs.Items[0].ID, "cmd-") {
		t.Fatalf("devices labelled region=us: %+v", devs.Items)
	}
	// Bad flags are errors that say what to fix.
	err = run(context.Background(), []string{"sim", "--server", s.URL, "--devices", "5"}, testEnv(), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "gateway token") {
		t.Fatalf("sim without a gateway token: %v", err)
	}
}
