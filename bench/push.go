package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/sim"
	"github.com/flotilla-ota/flotilla/push"
)

const pushPool = 64

// runPush: a push rollout of a 1 MiB payload to N nodes with a pool of 64.
// The baseline drives the same number of identical nodes straight through
// the push protocol (start, payload, wait for the install) with 64 workers
// and no server: the floor of what delivery can cost.
func runPush(ctx context.Context, o opts) ([]result, error) {
	nodes := 1000
	if o.quick {
		nodes = 300
	}
	const size = 1 << 20
	payload := make([]byte, size)
	rand.Read(payload)

	base, err := rawPush(ctx, filepath.Join(o.tmp, "push-raw"), nodes, payload)
	if err != nil {
		return nil, err
	}
	o.logf("raw protocol, %d workers: %d nodes in %s", pushPool, nodes, base.Round(time.Millisecond))

	f, err := startFlotilla(filepath.Join(o.tmp, "push"), func(c *server.Config) {
		c.PushWorkers, c.SchedulerTick = pushPool, 100*time.Millisecond
	})
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	if err := f.upload("node-fw", "2.0.0", bytes.NewReader(payload), size); err != nil {
		return nil, err
	}
	fleet, err := sim.New(sim.Config{Server: f.URL, APIToken: adminToken, Devices: nodes, Push: true, InstallTime: time.Millisecond, Prefix: "node-",
		Labels: []sim.LabelSpread{{Key: "kind", Values: []string{"node"}, Weights: []int{1}}}})
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go fleet.Run(fctx)
	for deadline := time.Now().Add(time.Minute); fleet.Tally().Registered < int64(nodes); {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d nodes registered", fleet.Tally().Registered)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	var ro rolloutView
	if err := f.api("POST", "/api/v1/rollouts", map[string]any{"name": "push", "artifact": map[string]string{"name": "node-fw", "version": "2.0.0"},
		"selector": "kind=node", "waves": 1, "delivery": "push", "start": true}, &ro); err != nil {
		return nil, err
	}
	ro, err = f.waitRollout(ro.ID, 10*time.Minute, func(r rolloutView) bool { return r.Status != "running" && r.Status != "ready" })
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	if ro.Status != "completed" || ro.Counts["succeeded"] != nodes {
		return nil, fmt.Errorf("push rollout ended %s with %v", ro.Status, ro.Counts)
	}
	fl, bl := float64(nodes)/took.Seconds(), float64(nodes)/base.Seconds()
	return []result{{Name: fmt.Sprintf("Push rollout, %d nodes, 1 MiB, pool %d", nodes, pushPool),
		Figure: fmt.Sprintf("%.0f nodes/s (%s)", fl, took.Round(time.Millisecond)), Baseline: fmt.Sprintf("%.0f nodes/s (raw protocol)", bl),
		Ratio: fl / bl, Target: "≥ 0.80", Pass: fl/bl >= 0.8}}, nil
}

// rawPush serves n nodes and updates them all with pushPool workers.
func rawPush(ctx context.Context, dir string, n int, payload []byte) (time.Duration, error) {
	sum := sha256.Sum256(payload)
	art := push.Artifact{Name: "node-fw", Version: "2.0.0", Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:])}
	mux := http.NewServeMux()
	for i := 0; i < n; i++ {
		node, err := push.NewNode(push.NodeConfig{StateDir: filepath.Join(dir, fmt.Sprint(i)), Version: "1.0.0", Logger: slog.New(slog.DiscardHandler),
			Installer: push.InstallerFunc(func(ctx context.Context, _ push.Artifact, _ string) error { time.Sleep(time.Millisecond); return nil })})
		if err != nil {
			return 0, err
		}
		prefix := fmt.Sprintf("/node/%d", i)
		mux.Handle(prefix+"/", http.StripPrefix(prefix, node))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer hs.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pushPool}}
	jobs := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < pushPool; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c := &push.Client{Base: fmt.Sprintf("http://%s/node/%d", ln.Addr(), i), HTTP: hc}
				id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
				if _, err := c.Start(ctx, push.StartRequest{ID: id, Artifact: art}); err != nil {
					errs <- err
					continue
				}
				if _, err := c.SendPayload(ctx, id, io.Reader(bytes.NewReader(payload)), 0, int64(len(payload))); err != nil {
					errs <- err
					continue
				}
				for {
					st, err := c.Status(ctx)
					if err != nil {
						errs <- err
						break
					}
					if push.Terminal(st.State) {
						if st.State != push.StateComplete {
							errs <- fmt.Errorf("node %d ended %s: %s", i, st.State, st.Error)
						}
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		return 0, fmt.Errorf("raw push: %w", err)
	}
	return took, nil
}
