package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/testtool"
	"github.com/flotilla-ota/flotilla/label"
)

const benchGateway = "flt_bench_gateway_token_0123456789"

// randomReader is a fast deterministic byte stream.
func randomReader(seed byte) io.Reader { return rand.NewChaCha8([32]byte{seed}) }

// runE2E: simulated devices (real DDI over HTTP, real downloads) go through
// a 5-wave rollout with a 1 s poll and no grace; the wall time is held to
// the theoretical minimum, waves × (poll interval + download + report).
func runE2E(ctx context.Context, o opts) ([]result, error) {
	devices := 10_000
	if o.quick {
		devices = 2_000
	}
	return e2e(ctx, o, "e2e", devices, 5, time.Second, 1.5)
}

// runFleet is the realistic fleet of issue #18: many devices polling at a
// calm pace, where the minimum is dominated by the poll interval.
func runFleet(ctx context.Context, o opts) ([]result, error) {
	devices, poll := 100_000, 30*time.Second
	if o.quick {
		devices, poll = 10_000, 10*time.Second
	}
	return e2e(ctx, o, "fleet", devices, 3, poll, 1.2)
}

// e2e runs a rollout over a simulated fleet of devices polling every poll,
// in waves, against its theoretical minimum: per wave one poll interval
// (the last device to poll sees the wave then), one download and one
// report as a single device sees them on this server.
func e2e(ctx context.Context, o opts, name string, devices, waves int, poll time.Duration, target float64) ([]result, error) {
	const size = 256 << 10
	f, err := startFlotilla(filepath.Join(o.tmp, name), func(c *server.Config) {
		c.GatewayToken, c.PollInterval = benchGateway, poll
	})
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	if err := f.upload("bench-fw", "2.0.0", io.LimitReader(randomReader(1), size), size); err != nil {
		return nil, err
	}
	// The fleet runs in its own process, `flotilla sim`, as a load
	// generator would: 10k devices hold 10k connections on each side.
	bin, err := buildFlotilla(o.tmp)
	if err != nil {
		return nil, err
	}
	simCmd := exec.Command(bin, "sim", "--server", f.URL, "--gateway-token", benchGateway, "--devices", fmt.Sprint(devices),
		"--poll", poll.String(), "--install-time", "1ms", "--prefix", name+"-", "--labels", "fleet="+name, "--summary-every", "5s", "--log-level", "error")
	if o.windowProfile != "" {
		// The simulator's whole life, registrations included: the load
		// generator's share of the two cores is CPU the server cannot have.
		simCmd.Args = append(simCmd.Args, "--cpuprofile", o.windowProfile+".sim")
	}
	var simOut testtool.SyncBuffer
	simCmd.Stdout, simCmd.Stderr = &simOut, &simOut
	if err := simCmd.Start(); err != nil {
		return nil, err
	}
	// Stopped once the rollout ends, for its final tally, or on the way out.
	simStopped := false
	stopSim := func() {
		if !simStopped {
			simStopped = true
			simCmd.Process.Signal(syscall.SIGTERM)
			simCmd.Wait()
		}
	}
	defer stopSim()
	regStart := time.Now()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		n, err := f.Srv.Store.CountDevices(ctx, "default", label.MustParse("fleet="+name))
		if err != nil {
			return nil, err
		}
		if n == devices {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d devices registered\n%s", n, devices, simOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	o.logf("%d devices registered themselves in %s", devices, time.Since(regStart).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // let the registration burst settle
	// One download and one report, as a single device sees them on this
	// server right now.
	t := time.Now()
	if _, _, err := fetch(f.URL+"/api/v1/artifacts/bench-fw/2.0.0/content", "Authorization", "Bearer "+adminToken); err != nil {
		return nil, err
	}
	download := time.Since(t)
	t = time.Now()
	req, _ := http.NewRequest("PUT", f.URL+"/default/controller/v1/"+name+"-probe/configData", bytes.NewReader([]byte(`{"mode":"merge","data":{"probe":"1"}}`)))
	req.Header.Set("Authorization", "GatewayToken "+benchGateway)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	report := time.Since(t)
	minimum := time.Duration(waves) * (poll + download + report)
	idle := idlePolling(o, simCmd.Process.Pid, 5*time.Second, time.Duration(target*float64(minimum)), devices)

	stopProfile := o.profileWindow()
	errors0 := simErrors(simOut.String())
	serverCPU0, simCPU0 := selfCPU(), procCPU(simCmd.Process.Pid)
	ops0 := f.storeOps()
	start := time.Now()
	var ro rolloutView
	if err := f.api("POST", "/api/v1/rollouts", map[string]any{"name": name, "artifact": map[string]string{"name": "bench-fw", "version": "2.0.0"},
		"selector": "fleet=" + name, "waves": waves, "start": true, "policy": map[string]any{"grace_seconds": 0}}, &ro); err != nil {
		return nil, err
	}
	// Five times the minimum is far beyond any target: a rollout still
	// running then is reported as what it is, not waited for.
	limit := max(5*minimum, 2*time.Minute)
	// Fine-grained enough that the figure is the rollout's time, not the
	// sleep's (a fortieth of a poll interval), and no finer: a status read
	// counts the rollout's deployments by wave — at 100k devices 3 ms of
	// server CPU, which every 25 ms was 12% of the server's time.
	every := min(max(poll/40, 25*time.Millisecond), 250*time.Millisecond)
	// A progress line every poll interval (at least 5 s): which wave moves
	// and how fast, and who had the CPU meanwhile.
	progress := progressLog{o: o, every: max(poll, 5*time.Second), start: start, last: start, server: serverCPU0, sim: simCPU0, simPid: simCmd.Process.Pid}
	ro, err = f.waitRolloutEvery(ro.ID, limit, every, func(r rolloutView) bool {
		progress.maybe(r)
		return r.Status != "running" && r.Status != "ready"
	})
	timedOut := err != nil && ro.ID != ""
	if err != nil && !timedOut {
		return nil, err
	}
	wall := time.Since(start)
	stopProfile()
	serverCPU, simCPU := selfCPU()-serverCPU0, procCPU(simCmd.Process.Pid)-simCPU0
	// Where the two cores went: the load generator's share is CPU the
	// server could not have.
	o.logf("CPU during the rollout: server %.1f s, simulator %.1f s, of %.1f s available (%d cores × wall)",
		serverCPU.Seconds(), simCPU.Seconds(), wall.Seconds()*float64(runtime.NumCPU()), runtime.NumCPU())
	// The rollout's own work, estimated as both processes' CPU less what
	// the idle polling took at its measured rate over the same time.
	o.logf("the rollout's own work, both processes: %.2f ms of CPU per device-deployment (their CPU less the idle polling's over %s)",
		(serverCPU+simCPU).Seconds()*1000/float64(devices)-idle*wall.Seconds()*1000/float64(devices), wall.Round(time.Millisecond))
	// A device whose request failed tries again a poll interval later: the
	// simulator's errors (its last summary before the rollout, its final
	// tally after) say whether any did.
	stopSim()
	o.logf("simulator's request errors: %d before the rollout, %d since it started (to within 5 s)", errors0, simErrors(simOut.String())-errors0)
	// What the database did for each device-deployment, as the server
	// counts its store operations: unlike CPU, not moved by the machine.
	ops1 := f.storeOps()
	o.logf("store operations per device-deployment: %s", opsPer(ops0, ops1, devices))
	o.logf("rollout-wide reads: %s", opsCount(ops0, ops1, "rollout snapshot", "count waves", "get rollout"))
	o.logf("rollout %s in %s: %v; server CPU per device-deployment %s", ro.Status, wall.Round(time.Millisecond), ro.Counts,
		(serverCPU / time.Duration(devices)).Round(time.Microsecond))
	if timedOut {
		o.logf("not done after %s: %v", limit, ro.Counts)
		return []result{{Name: fmt.Sprintf("End-to-end rollout, %dk devices, %d waves, %g s poll", devices/1000, waves, poll.Seconds()),
			Figure:   fmt.Sprintf("> %s (%d of %d succeeded)", limit.Round(time.Second), ro.Counts["succeeded"], devices),
			Baseline: minimum.Round(10*time.Millisecond).String() + " (theoretical minimum)",
			Ratio:    wall.Seconds() / minimum.Seconds(), Target: fmt.Sprintf("≤ %.1f", target)}}, nil
	}
	if ro.Status != "completed" || ro.Counts["succeeded"] != devices {
		return nil, fmt.Errorf("rollout ended %s (%s) with %v", ro.Status, ro.Reason, ro.Counts)
	}
	for i, w := range ro.Waves {
		if w.StartedAt != nil && w.FinishedAt != nil {
			o.logf("wave %d: started +%s, took %s", i+1, w.StartedAt.Sub(start).Round(time.Millisecond), w.FinishedAt.Sub(*w.StartedAt).Round(time.Millisecond))
		}
	}
	ratio := wall.Seconds() / minimum.Seconds()
	return []result{{Name: fmt.Sprintf("End-to-end rollout, %dk devices, %d waves, %g s poll", devices/1000, waves, poll.Seconds()),
		Figure: wall.Round(10 * time.Millisecond).String(), Baseline: minimum.Round(10*time.Millisecond).String() + " (theoretical minimum)",
		Ratio: ratio, Target: fmt.Sprintf("≤ %.1f", target), Pass: ratio <= target,
		Note: fmt.Sprintf("server CPU %s per device-deployment", (serverCPU / time.Duration(devices)).Round(time.Microsecond))}}, nil
}

// idlePolling measures, over window with the fleet polling and no rollout,
// the cores both processes use, and logs what that leaves of the machine at
// the target's wall time for the rollout's own work. It returns the cores.
func idlePolling(o opts, simPid int, window, at time.Duration, devices int) float64 {
	server0, sim0 := selfCPU(), procCPU(simPid)
	time.Sleep(window)
	server := (selfCPU() - server0).Seconds() / window.Seconds()
	sim := (procCPU(simPid) - sim0).Seconds() / window.Seconds()
	cores := float64(runtime.NumCPU())
	o.logf("idle polling, no rollout (%s): server %.2f core, simulator %.2f core; at the target's %s the %g cores give %.1f s of CPU, the idle polling takes %.1f s of it, which leaves %.2f ms per device-deployment for both processes' rollout work",
		window, server, sim, at.Round(100*time.Millisecond), cores, cores*at.Seconds(), (server+sim)*at.Seconds(), (cores-server-sim)*at.Seconds()*1000/float64(devices))
	return server + sim
}

// simErrorsRE finds the request errors in the simulator's summary lines
// and in its final tally.
var simErrorsRE = regexp.MustCompile(`polls \d+ \(errors (\d+)\)|poll errors +(\d+)`)

// simErrors is the request error count the simulator printed last.
func simErrors(out string) int {
	m := simErrorsRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0
	}
	last := m[len(m)-1]
	n, _ := strconv.Atoi(last[1] + last[2])
	return n
}

// progressLog prints a rollout's progress at most every interval.
type progressLog struct {
	o           opts
	every       time.Duration
	start, last time.Time
	server, sim time.Duration
	simPid      int
}

func (p *progressLog) maybe(r rolloutView) {
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	server, sim := selfCPU(), procCPU(p.simPid)
	var waves []string
	for i, w := range r.Waves {
		if w.Status != "running" {
			continue
		}
		open := 0
		for state, n := range w.Counts {
			if state != "succeeded" && state != "failed" {
				open += n
			}
		}
		waves = append(waves, fmt.Sprintf("wave %d: %d succeeded, %d open", i+1, w.Counts["succeeded"], open))
	}
	wall := now.Sub(p.last)
	p.o.logf("+%s %s (rollout: %d succeeded); CPU since the last line: server %.0f%%, simulator %.0f%% of one core", now.Sub(p.start).Round(time.Second),
		strings.Join(waves, ", "), r.Counts["succeeded"], 100*(server-p.server).Seconds()/wall.Seconds(), 100*(sim-p.sim).Seconds()/wall.Seconds())
	p.last, p.server, p.sim = now, server, sim
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is another process's user+system CPU time, from /proc (Linux);
// 0 where that cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// the 14th and 15th fields overall, in clock ticks (100 per second
	// on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
