package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/internal/storetest"
)

const adminToken = servertest.AdminToken

// flot is an in-process Flotilla server.
type flot struct {
	*servertest.Server
	Addr string
}

func startFlotilla(dir string, edit func(*server.Config)) (*flot, error) {
	s, err := servertest.New(dir, servertest.WithConfig(func(c *server.Config) {
		c.PollInterval = 5 * time.Minute
		// Simulated fleets register all at once; the quota is for abuse.
		c.Quotas.RegistrationsPerMinute = 1 << 30
		if edit != nil {
			edit(c)
		}
	}))
	if err != nil {
		return nil, err
	}
	return &flot{Server: s, Addr: strings.TrimPrefix(s.URL, "http://")}, nil
}

// api calls the management API; v, if not nil, receives the JSON answer.
func (f *flot) api(method, path string, body, v any) error {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.URL+path, r)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}

// upload streams size bytes from r as an artifact.
func (f *flot) upload(name, version string, r io.Reader, size int64) error {
	req, _ := http.NewRequest("PUT", f.URL+"/api/v1/artifacts/"+name+"/"+version, r)
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("upload %s %s: %d %s", name, version, resp.StatusCode, b)
	}
	return nil
}

// deviceToken is bench device i's DDI token.
func deviceToken(i int) string { return fmt.Sprintf("fdt_bench_%08d", i) }

func deviceID(i int) string { return fmt.Sprintf("bench-%07d", i) }

// createDevices registers n devices in bulk, the first withTokens of them
// with a TargetToken, and returns how long the inserts took.
func createDevices(ctx context.Context, st store.Store, n, withTokens int, labels map[string]string) (time.Duration, error) {
	return createDevicesWith(ctx, st, n, withTokens, func(int) map[string]string { return labels })
}

// createDevicesWith is createDevices with the labels of device i.
func createDevicesWith(ctx context.Context, st store.Store, n, withTokens int, labels func(i int) map[string]string) (time.Duration, error) {
	now := time.Now()
	start := time.Now()
	const batch = 10000
	for lo := 0; lo < n; lo += batch {
		var ds []flotilla.Device
		for i := lo; i < min(n, lo+batch); i++ {
			d := flotilla.Device{Tenant: flotilla.DefaultTenant, ID: deviceID(i), Labels: labels(i), Attributes: map[string]string{},
				Version: "1.0.0", CreatedAt: now, UpdatedAt: now}
			if i < withTokens {
				d.TokenHash = core.HashSecret(deviceToken(i))
			}
			ds = append(ds, d)
		}
		if err := st.CreateDevices(ctx, ds); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// pollRequests renders one poll request per device.
func pollRequests(host string, n int) [][]byte {
	reqs := make([][]byte, n)
	for i := range reqs {
		reqs[i] = getRequest(host, "/default/controller/v1/"+deviceID(i), "Authorization", "TargetToken "+deviceToken(i))
	}
	return reqs
}

// plainServer serves body with the given headers from a bare net/http
// handler: the baseline for request throughput.
func plainServer(header http.Header, body []byte) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range header {
			h[k] = v
		}
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go hs.Serve(ln)
	return ln.Addr().String(), func() { hs.Close() }, nil
}

// fetch GETs a URL with headers and returns the answer.
func fetch(url string, headers ...string) (http.Header, []byte, error) {
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return resp.Header, b, err
}

// rssKiB reads a process's resident set (and its peak) from /proc.
func rssKiB(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &rss)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &peak)
		}
	}
	return rss, peak, nil
}

type rolloutView struct {
	ID     string         `json:"id"`
	Status string         `json:"status"`
	Reason string         `json:"reason"`
	Counts map[string]int `json:"counts"`
	Waves  []struct {
		Status     string         `json:"status"`
		Counts     map[string]int `json:"counts"`
		StartedAt  *time.Time     `json:"started_at"`
		FinishedAt *time.Time     `json:"finished_at"`
	} `json:"waves"`
}

// waitRollout polls a rollout until cond holds, every 25 ms.
func (f *flot) waitRollout(id string, timeout time.Duration, cond func(rolloutView) bool) (rolloutView, error) {
	return f.waitRolloutEvery(id, timeout, 25*time.Millisecond, cond)
}

// waitRolloutEvery polls a rollout every interval until cond holds.
func (f *flot) waitRolloutEvery(id string, timeout, interval time.Duration, cond func(rolloutView) bool) (rolloutView, error) {
	deadline := time.Now().Add(timeout)
	for {
		var ro rolloutView
		if err := f.api("GET", "/api/v1/rollouts/"+id, nil, &ro); err != nil {
			return ro, err
		}
		if cond(ro) {
			return ro, nil
		}
		if time.Now().After(deadline) {
			return ro, fmt.Errorf("rollout %s still %s after %s: %v", id, ro.Status, timeout, ro.Counts)
		}
		time.Sleep(interval)
	}
}

// freshSchema gives the benchmark a schema of its own on PostgreSQL.
func freshSchema(ctx context.Context, base string) (string, func(), error) {
	return storetest.NewSchema(ctx, base)
}

// p95 is the 95th percentile of ds (sorted in place).
func p95(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)*95/100]
}

// infoP95 is the p95 latency of the cheapest authenticated request on f
// (GET /api/v1/info) over rounds: the baseline of the page-time rows.
func infoP95(f *flot, rounds int) (time.Duration, error) {
	var ds []time.Duration
	for range rounds {
		start := time.Now()
		if err := f.api("GET", "/api/v1/info", nil, nil); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	return p95(ds), nil
}

var storeOpRE = regexp.MustCompile(`(?m)^flotilla_store_operation_duration_seconds_count\{op="([^"]+)"\} (\d+)$`)

// storeOps reads the server's count of each store operation from /metrics
// (nil if it cannot).
func (f *flot) storeOps() map[string]int {
	resp, err := http.Get(f.URL + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ops := map[string]int{}
	for _, m := range storeOpRE.FindAllSubmatch(b, -1) {
		ops[string(m[1])], _ = strconv.Atoi(string(m[2]))
	}
	return ops
}

// opsPer lists, busiest first, each operation's count between two reads
// of storeOps, per one of n, leaving out the rare.
func opsPer(before, after map[string]int, n int) string {
	type op struct {
		name string
		d    int
	}
	var ops []op
	for name, c := range after {
		if d := c - before[name]; d*100 >= n { // at least one in a hundred
			ops = append(ops, op{name, d})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].d > ops[j].d || (ops[i].d == ops[j].d && ops[i].name < ops[j].name) })
	parts := make([]string, len(ops))
	for i, o := range ops {
		parts[i] = fmt.Sprintf("%s %.2f", o.name, float64(o.d)/float64(n))
	}
	return strings.Join(parts, ", ")
}

// opsCount says how many times each named store operation ran between
// before and after: the rollout-wide reads (its snapshot, its counts)
// are too few per device-deployment for opsPer.
func opsCount(before, after map[string]int, names ...string) string {
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", name, after[name]-before[name])
	}
	return strings.Join(parts, ", ")
}
