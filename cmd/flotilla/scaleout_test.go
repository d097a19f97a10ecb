package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/flotilla-ota/flotilla/internal/blob/s3/s3test"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/storetest"
	"github.com/flotilla-ota/flotilla/updater"
)

// lbHost is the name devices use for the replicas; failoverTransport
// resolves it, like a load balancer would.
const lbHost = "flotilla.lb"

// failoverTransport dials its home replica first and the others when that
// one refuses: the client side of a load balancer's health checks.
func failoverTransport(replicas []string, home int) *http.Transport {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !strings.HasPrefix(addr, lbHost+":") {
				return d.DialContext(ctx, network, addr)
			}
			var err error
			for i := range replicas {
				var c net.Conn
				if c, err = d.DialContext(ctx, network, replicas[(home+i)%len(replicas)]); err == nil {
					return c, nil
				}
			}
			return nil, err
		},
	}
}

type countingDevice struct {
	updater.DefaultFetcher
	applied *atomic.Int32
}

func (d countingDevice) Apply(context.Context, *updater.Update, *updater.Payload) error {
	d.applied.Add(1)
	return nil
}

// watch collects the final deployment state per device from a WebSocket,
// and every state it heard per device, for the message of a failure.
type watch struct {
	mu    sync.Mutex
	start time.Time
	final map[string]string
	heard map[string][]string
	err   error
}

// missing says, for a failure's message, how many devices were never heard
// of and, for up to n whose last heard state is not state, the states
// heard in order and when (since the watch started) — which tells a late
// stale event from a missing final.
func (w *watch) missing(state string, devices, n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id, s := range w.final {
		if s != state && len(out) < n {
			out = append(out, id+": "+strings.Join(w.heard[id], " "))
		}
	}
	sort.Strings(out)
	return fmt.Sprintf("stream error: %v; never heard of: %d; last heard otherwise: %s", w.err, devices-len(w.final), strings.Join(out, "; "))
}

func (w *watch) count(state string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.final {
		if s == state {
			n++
		}
	}
	return n
}

func watchEvents(ctx context.Context, t *testing.T, base, rollout string) *watch {
	w := &watch{start: time.Now(), final: map[string]string{}, heard: map[string][]string{}}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/api/v1/events?rollout="+rollout+"&type=deployment&token="+adminSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	go func() {
		defer c.CloseNow()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			var m struct {
				Type, DeviceID, State string
			}
			json.Unmarshal(b, &m)
			if m.Type == "deployment" {
				w.mu.Lock()
				w.final[m.DeviceID] = m.State
				w.heard[m.DeviceID] = append(w.heard[m.DeviceID], fmt.Sprintf("%s@%dms", m.State, time.Since(w.start).Milliseconds()))
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// TestThreeReplicasSurviveAKill is the scale-out acceptance test: three
// `flotilla server` processes on one PostgreSQL and one S3-compatible
// server, 1,000 SDK devices spread over them, a 5-wave rollout, and the
// replica driving the rollout SIGKILLed in the middle.
func TestThreeReplicasSurviveAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("scale-out test in -short mode")
	}
	const devices, waves = 1000, 5
	dsn := storetest.PostgresDSN(t)
	s3 := s3test.Start(t)

	// Migrations run ahead, as before a rolling upgrade.
	out, err := exec.Command(flotillaBinary(t), "migrate", "--database-url", dsn).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "database schema at version") {
		t.Fatalf("flotilla migrate: %v\n%s", err, out)
	}

	var replicas []*serverProc
	var addrs []string
	for i := 0; i < 3; i++ {
		p := startServerProcEnv(t, t.TempDir(), s3.Env(), "--database-url", dsn, "--blob-url", s3.URL(), "--presign-downloads",
			"--replica-id", fmt.Sprintf("replica-%d", i), "--poll-interval", "1s", "--scheduler-tick", "250ms", "--scheduler-lease", "2s")
		replicas = append(replicas, p)
		addrs = append(addrs, strings.TrimPrefix(p.URL, "http://"))
	}
	api := func(i int) *servertest.API { return &servertest.API{T: t, Base: replicas[i].URL, Token: adminSecret} }
	api(0).Upload("kiosk-fw", "2.0.0", randomBytes(256<<10, 7), "")

	// Devices register round-robin across the replicas and poll through
	// their home replica.
	transports := []*http.Transport{failoverTransport(addrs, 0), failoverTransport(addrs, 1), failoverTransport(addrs, 2)}
	applied := make([]atomic.Int32, devices)
	stateRoot := t.TempDir()
	for i := 0; i < devices; i++ {
		id := fmt.Sprintf("kiosk-%04d", i)
		tok := api(i%3).CreateDevice(id, map[string]string{"fleet": "kiosk"})
		c, err := updater.New(updater.Config{Server: "http://" + lbHost, ControllerID: id, Token: tok, CurrentVersion: "1.0.0",
			Handler: countingDevice{applied: &applied[i]}, HTTPClient: &http.Client{Transport: transports[i%3], Timeout: 30 * time.Second},
			StateDir: filepath.Join(stateRoot, id), Logger: slog.New(slog.DiscardHandler),
			FirstCheck: updater.Interval{Min: 10 * time.Millisecond, Max: time.Second}, ActiveInterval: 500 * time.Millisecond,
			FallbackInterval: updater.Interval{Min: 500 * time.Millisecond, Max: time.Second}, ProgressInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		c.Start(context.Background())
		t.Cleanup(c.Stop)
	}

	var ro struct {
		ID     string
		Status string
		Counts map[string]int
		Waves  []struct{ Status string }
	}
	api(1).Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "ha", "artifact": map[string]string{"name": "kiosk-fw", "version": "2.0.0"},
		"selector": "fleet=kiosk", "waves": waves, "policy": map[string]any{"grace_seconds": 0}}, &ro)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	watches := []*watch{watchEvents(ctx, t, replicas[0].URL, ro.ID), watchEvents(ctx, t, replicas[1].URL, ro.ID), watchEvents(ctx, t, replicas[2].URL, ro.ID)}
	api(2).Must(200, "POST", "/api/v1/rollouts/"+ro.ID+"/start", nil, nil)

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

	// SIGKILL the replica that drives the rollout once the third wave runs.
	var killed int
	servertest.Eventually(t, 120*time.Second, func() error {
		var running int
		db.QueryRow(`SELECT COUNT(DISTINCT wave) FROM rollout_runs WHERE rollout_id = $1`, ro.ID).Scan(&running)
		if running < 3 {
			return fmt.Errorf("%d waves started", running)
		}
		return nil
	})
	o := owner()
	if !strings.HasPrefix(o, "replica-") {
		t.Fatalf("rollout lease owner %q", o)
	}
	fmt.Sscanf(o, "replica-%d", &killed)
	replicas[killed].cmd.Process.Kill()
	replicas[killed].cmd.Wait()
	t.Logf("killed %s (the scheduler of the rollout) during wave 3", o)
	survivor := (killed + 1) % 3

	servertest.Eventually(t, 180*time.Second, func() error {
		api(survivor).Must(200, "GET", "/api/v1/rollouts/"+ro.ID, nil, &ro)
		if ro.Status != "completed" {
			return fmt.Errorf("rollout %s, counts %v, lease %q", ro.Status, ro.Counts, owner())
		}
		return nil
	})
	if ro.Counts["succeeded"] != devices {
		t.Fatalf("counts %v", ro.Counts)
	}
	var runs, distinctWaves, deps, devs int
	db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT wave) FROM rollout_runs WHERE rollout_id = $1`, ro.ID).Scan(&runs, &distinctWaves)
	db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT device_id) FROM deployments WHERE rollout_id = $1`, ro.ID).Scan(&deps, &devs)
	if runs != waves || distinctWaves != waves {
		t.Fatalf("%d wave runs over %d waves: a wave started twice", runs, distinctWaves)
	}
	if deps != devices || devs != devices {
		t.Fatalf("%d deployments for %d devices", deps, devs)
	}
	for i := range applied {
		if n := applied[i].Load(); n != 1 {
			t.Fatalf("kiosk-%04d installed %d times", i, n)
		}
	}
	// Every surviving replica's WebSocket saw every device finish.
	for i, w := range watches {
		if i == killed {
			continue
		}
		servertest.Eventually(t, 10*time.Second, func() error {
			if n := w.count("succeeded"); n != devices {
				return fmt.Errorf("replica-%d's watcher saw %d of %d devices succeed (%s)", i, n, devices, w.missing("succeeded", devices, 10))
			}
			return nil
		})
	}
}

// TestMigrateCommand: `flotilla migrate` brings a database to this binary's
// schema and says so; a replica refuses a schema newer than it knows.
func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite://" + filepath.Join(dir, "f.db")
	out, err := exec.Command(flotillaBinary(t), "migrate", "--database-url", db).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "database schema at version") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	var v int
	fmt.Sscanf(string(out[strings.Index(string(out), "version"):]), "version %d", &v)
	if v < 5 {
		t.Fatalf("schema version %d from %q", v, out)
	}
	conn, err := sql.Open("sqlite", strings.TrimPrefix(db, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future', 0)`, v+1); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	cmd := exec.Command(flotillaBinary(t), "server", "--listen", "127.0.0.1:0", "--data-dir", dir, "--database-url", db)
	cmd.Env = append(os.Environ(), "FLOTILLA_ADMIN_TOKEN="+adminSecret)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "newer than this binary") {
		t.Fatalf("server on a newer schema: %v\n%s", err, out)
	}
}
