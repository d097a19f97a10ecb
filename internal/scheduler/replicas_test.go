package scheduler_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/flotilla-ota/flotilla/internal/scheduler"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/storetest"
)

// TestTwoSchedulersOnePostgres: replica A drives a rollout, replica B's
// scheduler competes for it; A stops mid-rollout and B finishes. No wave
// runs twice and no device gets two deployments.
func TestTwoSchedulersOnePostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	blobs := filepath.Join(t.TempDir(), "blobs")
	opts := func(id string, noSched bool) servertest.Option {
		return servertest.WithConfig(func(c *server.Config) {
			c.DatabaseURL, c.BlobDir, c.ReplicaID, c.NoScheduler = dsn, blobs, id, noSched
			c.SchedulerTick, c.SchedulerLease = 100*time.Millisecond, 2*time.Second
		})
	}
	a := servertest.Start(t, opts("replica-a", false))
	b := servertest.Start(t, opts("replica-b", true))
	a.API.Upload("fw", "2.0.0", []byte(strings.Repeat("v2", 5000)), "")
	startFleet(t, []*servertest.Server{b}, 100, 0)

	var ro rolloutView
	a.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "ha", "artifact": map[string]string{"name": "fw", "version": "2.0.0"},
		"selector": "fleet=kiosk", "waves": 5, "policy": map[string]any{"grace_seconds": 1}, "start": true}, &ro)

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	owner := func() string {
		var o sql.NullString
		db.QueryRow(`SELECT lease_owner FROM rollouts WHERE id = $1`, ro.ID).Scan(&o)
		return o.String
	}
	servertest.Eventually(t, 10*time.Second, func() error {
		if o := owner(); o != "replica-a" {
			return fmt.Errorf("lease owner %q", o)
		}
		return nil
	})
	// B's scheduler joins and competes for the rollout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go scheduler.New(b.Srv.Core, b.Srv.Store, scheduler.Config{Owner: "replica-b", Tick: 100 * time.Millisecond, Lease: 2 * time.Second}).Run(ctx)

	// Stop A once the second wave runs.
	servertest.Eventually(t, 60*time.Second, func() error {
		ro = getRollout(b, ro.ID)
		if ro.Waves[1].Status == "scheduled" {
			return fmt.Errorf("wave 2 not started yet")
		}
		return nil
	})
	if o := owner(); o != "replica-a" {
		t.Fatalf("replica A lost its lease before it stopped (owner %q)", o)
	}
	a.Stop()
	servertest.Eventually(t, 90*time.Second, func() error {
		ro = getRollout(b, ro.ID)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout is %s (%s), owner %q, waves %+v", ro.Status, ro.Reason, owner(), ro.Waves)
		}
		return nil
	})
	if o := owner(); o != "" && o != "replica-b" {
		t.Fatalf("finished by %q", o)
	}
	var runs, waves, deps, devices int
	db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT wave) FROM rollout_runs WHERE rollout_id = $1`, ro.ID).Scan(&runs, &waves)
	db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT device_id) FROM deployments WHERE rollout_id = $1`, ro.ID).Scan(&deps, &devices)
	if runs != 5 || waves != 5 {
		t.Fatalf("%d runs over %d waves: a wave started twice", runs, waves)
	}
	if deps != 100 || devices != 100 {
		t.Fatalf("%d deployments for %d devices", deps, devices)
	}
	if ro.Counts["succeeded"] != 100 {
		t.Fatalf("counts %v", ro.Counts)
	}
}
