package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/dmf/dmfclient"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

// TestDMFOutboxSurvivesServerKill: a deployment is committed while the
// thing's exchange is missing, so its message cannot be published; the
// server is SIGKILLed, the gateway comes back, and the restarted server
// publishes the message from the outbox — exactly once.
func TestDMFOutboxSurvivesServerKill(t *testing.T) {
	broker := testtool.RabbitMQ(t)
	names := testtool.NewAMQPNames(t, broker, "flotilla-kill")
	exchange, queue, reply := names.Exchange, names.Queue, names.Reply
	amqpURL := broker + "?" + url.Values{"queue": {queue}, "exchange": {exchange}}.Encode()
	dir := t.TempDir()
	srv := startServerProc(t, dir, "--amqp-url", amqpURL)
	api := &servertest.API{T: t, Base: srv.URL, Token: adminSecret}
	ready := func(api *servertest.API) {
		servertest.Eventually(t, 30*time.Second, func() error {
			var r struct{ Checks map[string]string }
			api.Must(200, "GET", "/readyz", nil, &r)
			if r.Checks["dmf:default"] != "ok" {
				return fmt.Errorf("readyz: %v", r.Checks)
			}
			return nil
		})
	}
	ready(api)

	ctx := context.Background()
	gw, err := dmfclient.Dial(broker, exchange, reply)
	if err != nil {
		t.Fatal(err)
	}
	gw.Created(ctx, "default", "thing-k", "", nil)
	servertest.Eventually(t, 10*time.Second, func() error {
		if code, _ := api.Do("GET", "/api/v1/devices/thing-k", nil); code != 200 {
			return fmt.Errorf("thing-k: %d", code)
		}
		return nil
	})
	gw.Delete() // the gateway is away: its exchange is gone

	api.Upload("fw", "2.0.0", []byte("fw 2"), "")
	dep := api.Assign("thing-k", "fw", "2.0.0", nil)
	db, err := sql.Open("sqlite", filepath.Join(dir, "flotilla.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	owed := func() (n int) {
		db.QueryRow(`SELECT count(*) FROM dmf_outbox WHERE deployment_id = ?`, dep.ID).Scan(&n)
		return n
	}
	// Committed, tried (the broker refused it), still owed.
	servertest.Eventually(t, 10*time.Second, func() error {
		var tried int
		db.QueryRow(`SELECT count(*) FROM dmf_outbox WHERE deployment_id = ? AND claimed_by IS NOT NULL`, dep.ID).Scan(&tried)
		if tried != 1 {
			return fmt.Errorf("outbox: %d claimed messages for the deployment", tried)
		}
		return nil
	})
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	if n := owed(); n != 1 {
		t.Fatalf("after the kill the outbox holds %d messages for the deployment, want 1", n)
	}

	gw, err = dmfclient.Dial(broker, exchange, reply) // back
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv = startServerProc(t, dir, "--amqp-url", amqpURL)
	api = &servertest.API{T: t, Base: srv.URL, Token: adminSecret}
	m, err := gw.Next(ctx, 30*time.Second, func(m dmfclient.Message) bool { return m.Thing == "thing-k" })
	if err != nil {
		t.Fatalf("the restarted server did not publish the owed message: %v\n%s", err, srv.log.String())
	}
	if m.Topic != dmf.TopicDownloadAndInstall || m.ActionID() != dep.ID {
		t.Fatalf("got %s %s", m.Topic, m.Body)
	}
	if m, err := gw.Next(ctx, 3*time.Second, nil); err == nil {
		t.Fatalf("a second message: %s %s", m.Topic, m.Body)
	}
	if n := owed(); n != 0 {
		t.Fatalf("the outbox still holds %d messages", n)
	}
}
