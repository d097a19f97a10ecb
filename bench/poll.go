package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-ota/flotilla/internal/ratelimit"
	"github.com/flotilla-ota/flotilla/internal/server"
)

const pollConns = 64

// measurePair runs the baseline and Flotilla alternately, rounds times,
// and keeps the best of each: noise only ever slows a run down.
func measurePair(o opts, baseAddr, flotAddr string, reqs [][]byte, dur time.Duration, rounds int) (base, flot loadResult, err error) {
	for i := 0; i < rounds; i++ {
		b := load(baseAddr, pollConns, dur, reqs, 200)
		f := load(flotAddr, pollConns, dur, reqs, 200)
		o.logf("round %d: baseline %.0f req/s, flotilla %.0f req/s (errors %d/%d)", i+1, b.RPS(), f.RPS(), b.Errors, f.Errors)
		if f.Errors > 0 {
			return b, f, fmt.Errorf("flotilla answered %d requests wrongly, first: %s", f.Errors, f.FirstError)
		}
		if b.RPS() > base.RPS() || base.Elapsed == 0 {
			base = b
		}
		if f.RPS() > flot.RPS() || flot.Elapsed == 0 {
			flot = f
		}
	}
	return base, flot, nil
}

// runPoll measures DDI polls of 100k registered devices against a bare
// net/http handler writing the same bytes: first idle devices, then — after
// a one-wave rollout over all of them, itself timed — devices with a
// pending deployment.
func runPoll(ctx context.Context, o opts) ([]result, error) {
	const devices = 100_000
	dur, rounds := 10*time.Second, 3
	if o.quick {
		dur, rounds = 3*time.Second, 2
	}
	f, err := startFlotilla(filepath.Join(o.tmp, "poll"), func(c *server.Config) { c.SchedulerTick = 100 * time.Millisecond })
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	insert, err := createDevices(ctx, f.Srv.Store, devices, devices, map[string]string{"fleet": "bench"})
	if err != nil {
		return nil, err
	}
	o.logf("registered %d devices in %s", devices, insert.Round(time.Millisecond))
	reqs := pollRequests(f.Addr, devices)
	// Warm up: every device polls once (authentication and poll answers
	// are cached after the first poll, as in a fleet that is running).
	warm := loadOnce(f.Addr, pollConns, reqs, 200)
	o.logf("warm-up: %d polls in %s", warm.Requests, warm.Elapsed.Round(time.Millisecond))

	idle, err := pollAgainstBaseline(o, f, reqs, dur, rounds)
	if err != nil {
		return nil, err
	}
	idle.Name, idle.Target = "DDI poll, idle device (100k registered, 64 conns)", "≥ 0.60"
	idle.Pass = idle.Ratio >= 0.6

	// The rate limiters' cost: the same polls with the default limits and
	// with none, alternating on the same server.
	limited := pollWithAndWithoutLimits(o, f, reqs, dur, rounds)

	// A rollout over every device, one wave: create + start, timed.
	if err := f.upload("bench-fw", "2.0.0", strings.NewReader(strings.Repeat("x", 64<<10)), 64<<10); err != nil {
		return nil, err
	}
	took, err := timeRollout(f, "fleet=bench", 1)
	if err != nil {
		return nil, err
	}
	o.logf("rollout over the 100k polling devices (one wave): %s, %s in all", lastSplit, took.Round(time.Millisecond))
	// Wait for the wave to be released: every device has a pending
	// deployment.
	var ids []rolloutView
	if err := f.api("GET", "/api/v1/rollouts", nil, &struct{ Items *[]rolloutView }{&ids}); err != nil {
		return nil, err
	}
	if _, err := f.waitRollout(ids[0].ID, time.Minute, func(r rolloutView) bool { return r.Counts["pending"] == devices }); err != nil {
		return nil, err
	}
	warm = loadOnce(f.Addr, pollConns, reqs, 200)
	o.logf("warm-up after the release: %d polls in %s", warm.Requests, warm.Elapsed.Round(time.Millisecond))
	pending, err := pollAgainstBaseline(o, f, reqs, dur, rounds)
	if err != nil {
		return nil, err
	}
	pending.Name, pending.Target = "DDI poll, pending deployment (100k, 64 conns)", "≥ 0.40"
	pending.Pass = pending.Ratio >= 0.4
	return []result{idle, limited, pending}, nil
}

// pollWithAndWithoutLimits measures idle polls with the default rate limits
// (per device and per address) against the same polls with none, on the
// same server: many short runs in pairs, alternating which goes first, and
// the median of the pairs' ratios — a limiter costs far less than this
// machine's noise, so one long run each would measure the noise.
func pollWithAndWithoutLimits(o opts, f *flot, reqs [][]byte, dur time.Duration, rounds int) result {
	on := func() { f.Srv.DDI.SetLimits(ratelimit.New(30, 300), ratelimit.New(5, 50)) }
	off := func() { f.Srv.DDI.SetLimits(nil, nil) }
	pairs, short := 8*rounds, dur/2
	var ratios []float64
	var with, without loadResult
	var errors int64
	for i := 0; i < pairs; i++ {
		var w0, w1 loadResult
		if i%2 == 0 {
			off()
			w0 = load(f.Addr, pollConns, short, reqs, 200)
			on()
			w1 = load(f.Addr, pollConns, short, reqs, 200)
		} else {
			on()
			w1 = load(f.Addr, pollConns, short, reqs, 200)
			off()
			w0 = load(f.Addr, pollConns, short, reqs, 200)
		}
		errors += w1.Errors
		ratios = append(ratios, w1.RPS()/w0.RPS())
		if without.Elapsed == 0 || w0.RPS() > without.RPS() {
			without = w0
		}
		if with.Elapsed == 0 || w1.RPS() > with.RPS() {
			with = w1
		}
	}
	on()
	slices.Sort(ratios)
	median := ratios[len(ratios)/2]
	o.logf("limits on / off, %d pairs of %s: ratios %.2f … %.2f, median %.3f (the machine's noise is wider than the limiter's cost)",
		pairs, short, ratios[0], ratios[len(ratios)-1], median)
	// So the figure is what the checks cost by themselves, contended as on
	// the server (64 goroutines, one client address, a key per device),
	// against the server's CPU per idle poll, estimated as half the
	// process's (cores/rate): the load generator runs in the process too.
	per := limiterCost(pollConns, time.Second)
	poll := time.Duration(float64(time.Second) * float64(runtime.NumCPU()) / without.RPS() / 2)
	share := float64(per) / float64(poll)
	o.logf("the limiter's checks: %s per request; an idle poll's server CPU ≈ %s; share %.2f%%", per, poll, 100*share)
	return result{Name: "DDI poll: rate limits' share of an idle poll's CPU", Figure: fmt.Sprintf("%s per request (pairs: median %.2f)", per, median),
		Baseline: poll.String() + " server CPU per idle poll (half the process's)", Ratio: 1 - share, Target: "≥ 0.95 (cost < 5%)", Pass: share < 0.05 && errors == 0}

}

// pollAgainstBaseline serves device 0's current poll answer from a bare
// handler and measures both.
func pollAgainstBaseline(o opts, f *flot, reqs [][]byte, dur time.Duration, rounds int) (result, error) {
	hdr, body, err := fetch(f.URL+"/default/controller/v1/"+deviceID(0), "Authorization", "TargetToken "+deviceToken(0))
	if err != nil {
		return result{}, err
	}
	header := http.Header{"Content-Type": hdr.Values("Content-Type"), "Etag": hdr.Values("Etag")}
	baseAddr, stop, err := plainServer(header, body)
	if err != nil {
		return result{}, err
	}
	defer stop()
	o.logf("answer: %d bytes: %s", len(body), body)
	base, fl, err := measurePair(o, baseAddr, f.Addr, reqs, dur, rounds)
	if err != nil {
		return result{}, err
	}
	return result{Figure: rate(fl.RPS(), "req/s"), Baseline: rate(base.RPS(), "req/s (net/http)"), Ratio: fl.RPS() / base.RPS()}, nil
}

// lastSplit says how the last timed rollout divided between its calls;
// lastRollout is its id.
var lastSplit, lastRollout string

// waitWritten waits until a large rollout has written the deployments of
// all its waves (in the background, after its start).
func waitWritten(ctx context.Context, f *flot, id string) error {
	for {
		_, waves, err := f.Srv.Store.GetRollout(ctx, "", id)
		if err != nil {
			return err
		}
		pending := false
		for _, w := range waves {
			pending = pending || w.Unwritten
		}
		if !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// timeRollout creates and starts a rollout over sel and returns how long
// the two calls took.
func timeRollout(f *flot, sel string, waves int) (time.Duration, error) {
	start := time.Now()
	var ro rolloutView
	if err := f.api("POST", "/api/v1/rollouts", map[string]any{"name": fmt.Sprintf("bench-%d", time.Now().UnixNano()),
		"artifact": map[string]string{"name": "bench-fw", "version": "2.0.0"}, "selector": sel, "waves": waves}, &ro); err != nil {
		return 0, err
	}
	// Large rollouts materialize in the background ("creating").
	for ro.Status == "creating" {
		time.Sleep(20 * time.Millisecond)
		if err := f.api("GET", "/api/v1/rollouts/"+ro.ID, nil, &ro); err != nil {
			return 0, err
		}
	}
	created := time.Since(start)
	if err := f.api("POST", "/api/v1/rollouts/"+ro.ID+"/start", nil, &ro); err != nil {
		return 0, err
	}
	lastRollout = ro.ID
	lastSplit = fmt.Sprintf("create %s + start %s", created.Round(time.Millisecond), (time.Since(start) - created).Round(time.Millisecond))
	return time.Since(start), nil
}

func rolloutResult(name string, took, insert time.Duration, limit time.Duration) result {
	return result{Name: name, Figure: took.Round(time.Millisecond).String(),
		Baseline: insert.Round(time.Millisecond).String() + " (bulk insert of the devices)", Ratio: took.Seconds() / insert.Seconds(),
		Target: "≤ " + limit.String(), Pass: took <= limit}
}

// runRolloutScale times rollout create + start (5 waves) on a quiet server:
// SQLite and PostgreSQL over 100k devices and, in full mode, SQLite over 1M.
func runRolloutScale(ctx context.Context, o opts) ([]result, error) {
	var out []result
	type run struct {
		name    string
		db      string
		devices int
		limit   time.Duration
	}
	runs := []run{{"Rollout create + start, 100k devices, SQLite", "", 100_000, 3 * time.Second}}
	if o.postgres != "" {
		runs = append(runs, run{"Rollout create + start, 100k devices, PostgreSQL", o.postgres, 100_000, 2 * time.Second})
	} else {
		o.logf("no PostgreSQL DSN (-postgres or FLOTILLA_TEST_POSTGRES): skipping the PostgreSQL figure")
	}
	if !o.quick {
		runs = append(runs, run{"Rollout create + start, 1M devices, SQLite", "", 1_000_000, 5 * time.Second})
	}
	for i, r := range runs {
		dir := filepath.Join(o.tmp, fmt.Sprintf("rollout-%d", i))
		db := r.db
		if strings.HasPrefix(db, "postgres") {
			var cleanup func()
			var err error
			if db, cleanup, err = freshSchema(ctx, db); err != nil {
				return nil, err
			}
			defer cleanup()
		}
		f, err := startFlotilla(dir, func(c *server.Config) {
			if db != "" {
				c.DatabaseURL = db
			}
		})
		if err != nil {
			return nil, err
		}
		insert, err := createDevices(ctx, f.Srv.Store, r.devices, 0, map[string]string{"fleet": "bench"})
		if err != nil {
			f.Stop()
			return nil, err
		}
		o.logf("%s: registered %d devices in %s", r.name, r.devices, insert.Round(time.Millisecond))
		if err := f.upload("bench-fw", "2.0.0", strings.NewReader("x"), 1); err != nil {
			f.Stop()
			return nil, err
		}
		stopProfile := func() {}
		if r.devices == runs[len(runs)-1].devices { // the largest: what -cpuprofile-window shows
			stopProfile = o.profileWindow()
		}
		took, err := timeRollout(f, "fleet=bench", 5)
		stopProfile()
		f.Stop()
		if err != nil {
			return nil, err
		}
		o.logf("%s: %s", r.name, lastSplit)
		out = append(out, rolloutResult(r.name, took, insert, r.limit))
	}
	return out, nil
}

// limiterCost is the wall time per request of identify's rate-limit checks
// (a Blocked for the client address, an AllowPair for the device) with n
// goroutines at once, times the cores: CPU time per request.
func limiterCost(n int, d time.Duration) time.Duration {
	dev, auth := ratelimit.New(30, 300), ratelimit.New(5, 50)
	var ops atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ids := make([]string, 1000)
			for k := range ids {
				ids[k] = deviceID(g + k*n)
			}
			for k := 0; ; k++ {
				if k%256 == 0 && time.Now().After(stop) {
					ops.Add(int64(k))
					return
				}
				now := time.Now()
				auth.Blocked("127.0.0.1", now)
				dev.AllowPair("default", ids[k%len(ids)], now)
			}
		}(g)
	}
	wg.Wait()
	return time.Duration(float64(d) * float64(runtime.NumCPU()) / float64(ops.Load()))
}
