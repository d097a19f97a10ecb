package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/servertest"
)

// TestHeldFeedbackAcrossStopsAndKills: intermediate feedback the server
// holds (--feedback-hold, here an hour so that nothing is flushed by time)
// is written by a graceful stop, by a read of the deployment and by the
// device's final report; a SIGKILL loses only held intermediate entries —
// never a final state — and the device carries on from the last written
// state.
func TestHeldFeedbackAcrossStopsAndKills(t *testing.T) {
	dir := t.TempDir()
	srv := startServerProc(t, dir, "--feedback-hold", "1h")
	api := &servertest.API{T: t, Base: srv.URL, Token: adminSecret}
	api.Upload("fw", "2.0.0", randomBytes(4096, 3), "")
	tokens, actions := map[string]string{}, map[string]int64{}
	for _, id := range []string{"stopped", "done", "read", "killed"} {
		tokens[id] = api.CreateDevice(id, nil)
		actions[id] = api.Assign(id, "fw", "2.0.0", nil).ID
	}
	ddi := func(method, url, token string, body []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "TargetToken "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s = %d", method, url, resp.StatusCode)
		}
	}
	feedback := func(base, id string, execution, finished string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"status": map[string]any{"execution": execution, "result": map[string]string{"finished": finished}}})
		ddi("POST", fmt.Sprintf("%s/default/controller/v1/%s/deploymentBase/%d/feedback", base, id, actions[id]), tokens[id], body)
	}
	// Each device fetches its action first, as DDI clients do: nothing is
	// held for a deployment its device has not fetched.
	for id := range tokens {
		ddi("GET", fmt.Sprintf("%s/default/controller/v1/%s/deploymentBase/%d", srv.URL, id, actions[id]), tokens[id], nil)
	}
	states := func(id string) (string, string) {
		d := api.Deployment(id, actions[id])
		var h []string
		for _, e := range d.History {
			h = append(h, e.State)
		}
		return d.State, fmt.Sprint(h)
	}
	intermediate := []string{"download", "downloaded", "proceeding"}

	// A graceful stop writes what it holds.
	for _, ex := range intermediate {
		feedback(srv.URL, "stopped", ex, "none")
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	srv = startServerProc(t, dir, "--feedback-hold", "1h")
	api.Base = srv.URL
	if st, h := states("stopped"); st != "installing" || h != "[pending pending downloading downloaded installing]" {
		t.Fatalf("after a graceful stop: %s, history %s", st, h)
	}

	for _, ex := range intermediate {
		feedback(srv.URL, "done", ex, "none")
		feedback(srv.URL, "killed", ex, "none")
	}
	feedback(srv.URL, "done", "closed", "success")
	feedback(srv.URL, "read", "download", "none")
	feedback(srv.URL, "read", "downloaded", "none")
	if st, _ := states("read"); st != "downloaded" {
		t.Fatalf("a read of the deployment shows %s, want what its device reported", st)
	}
	srv.cmd.Process.Signal(syscall.SIGKILL)
	srv.cmd.Wait()

	srv = startServerProc(t, dir)
	api.Base = srv.URL
	want := map[string][2]string{
		// The final report carried the held steps with it.
		"done": {"succeeded", "[pending pending downloading downloaded installing succeeded]"},
		// Read, so written.
		"read": {"downloaded", "[pending pending downloading downloaded]"},
		// Held when the server died: those entries are lost; what was
		// written (the fetch; the first report to this server) is kept.
		"killed": {"downloading", "[pending pending downloading]"},
	}
	for id, w := range want {
		if st, h := states(id); st != w[0] || h != w[1] {
			t.Fatalf("%s after the kill: %s, history %s; want %s, %s", id, st, h, w[0], w[1])
		}
	}
	feedback(srv.URL, "killed", "proceeding", "none")
	feedback(srv.URL, "killed", "closed", "success")
	if st, h := states("killed"); st != "succeeded" || h != "[pending pending downloading downloading succeeded]" {
		t.Fatalf("the device carried on: %s, history %s", st, h)
	}
}
