package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/server"
)

// buildFlotilla compiles the server binary into dir.
func buildFlotilla(dir string) (string, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	bin := filepath.Join(dir, "flotilla")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/flotilla")
	cmd.Dir = strings.TrimSpace(string(root))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

var listeningRE = regexp.MustCompile(`listening on\s+http://(\S+)`)

// runMemory: a `flotilla server` process with 1M registered devices, 10k of
// them polling at once over their own connections; its peak resident set
// is held to 1 GiB. The baseline is the same process's resident set at
// rest, before any device polled.
func runMemory(ctx context.Context, o opts) ([]result, error) {
	registered, polling := 1_000_000, 10_000
	dur := 20 * time.Second
	if o.quick {
		registered, polling, dur = 200_000, 2_000, 8*time.Second
	}
	dir := filepath.Join(o.tmp, "memory")
	bin, err := buildFlotilla(o.tmp)
	if err != nil {
		return nil, err
	}
	st, _, err := server.OpenStore(ctx, "sqlite://"+filepath.Join(dir, "flotilla.db"), nil)
	if err != nil {
		return nil, err
	}
	if err := st.CreateTenant(ctx, flotilla.Tenant{Name: flotilla.DefaultTenant, CreatedAt: time.Now()}); err != nil {
		st.Close()
		return nil, err
	}
	took, err := createDevices(ctx, st, registered, registered, map[string]string{"fleet": "bench"})
	st.Close()
	if err != nil {
		return nil, err
	}
	o.logf("registered %d devices in %s", registered, took.Round(time.Millisecond))

	args := []string{"server", "--listen", "127.0.0.1:0", "--data-dir", dir, "--poll-interval", "1m"}
	if o.windowProfile != "" {
		// The server is its own process here: it profiles itself, from
		// start to SIGTERM.
		args = append(args, "--cpuprofile", o.windowProfile)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "FLOTILLA_ADMIN_TOKEN="+adminToken, "FLOTILLA_DATABASE_URL=", "FLOTILLA_LOG_LEVEL=warn")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	addr := ""
	for sc.Scan() {
		if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if addr == "" {
		return nil, fmt.Errorf("server did not start")
	}
	time.Sleep(2 * time.Second)
	idle, _, err := rssKiB(cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if r, _, err := rssKiB(cmd.Process.Pid); err == nil && r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	// One connection per polling device.
	res := load(addr, polling, dur, pollRequests(addr, polling), 200)
	o.logf("%d devices polled over %d connections: %.0f req/s, %d errors (%s)", polling, polling, res.RPS(), res.Errors, res.FirstError)
	if res.Requests < int64(polling) {
		close(stop)
		return nil, fmt.Errorf("only %d polls answered (%d errors: %s)", res.Requests, res.Errors, res.FirstError)
	}
	// Then every other device polls once, over 64 connections: each poll
	// finds neither its authentication nor its answer cached. The baseline
	// is net/http answering the same bytes to the same requests.
	cold, coldBase, err := coldPolls(addr, registered, polling)
	close(stop)
	if err != nil {
		return nil, err
	}
	_, hwm, _ := rssKiB(cmd.Process.Pid)
	p := max(peak.Load(), hwm)
	o.logf("%d devices polled once each (cold caches): %.0f req/s, %d errors (%s); net/http %.0f req/s; RSS at rest %d MiB, peak %d MiB",
		registered-polling, cold.RPS(), cold.Errors, cold.FirstError, coldBase.RPS(), idle>>10, p>>10)
	limit := int64(1 << 20) // KiB
	return []result{{Name: fmt.Sprintf("DDI poll, %dk registered, each polled once (cold caches, 64 conns)", registered/1000),
		Figure: rate(cold.RPS(), "req/s"), Baseline: rate(coldBase.RPS(), "req/s (net/http)"), Ratio: cold.RPS() / coldBase.RPS(),
		Target: "≥ 0.60", Pass: cold.RPS()/coldBase.RPS() >= 0.6 && cold.Errors == 0,
	}, {Name: fmt.Sprintf("Server RSS, %dk registered, %dk polling, then all", registered/1000, polling/1000),
		Figure: fmt.Sprintf("%d MiB peak", p>>10), Baseline: fmt.Sprintf("%d MiB at rest", idle>>10), Ratio: float64(p) / float64(idle),
		Target: "≤ 1 GiB", Pass: p <= limit}}, nil
}

// coldPolls has devices from..n-1 poll the server at addr once each, and
// a bare net/http server answer the same requests with the bytes the
// server gave device from.
func coldPolls(addr string, n, from int) (flot, base loadResult, err error) {
	hdr, body, err := fetch("http://"+addr+"/default/controller/v1/"+deviceID(0), "Authorization", "TargetToken "+deviceToken(0))
	if err != nil {
		return flot, base, err
	}
	reqs := pollRequests(addr, n)[from:]
	flot = loadOnce(addr, 64, reqs, 200)
	baseAddr, stopBase, err := plainServer(http.Header{"Content-Type": hdr.Values("Content-Type"), "Etag": hdr.Values("Etag")}, body)
	if err != nil {
		return flot, base, err
	}
	defer stopBase()
	base = loadOnce(baseAddr, 64, reqs, 200)
	return flot, base, nil
}
