// Package sim simulates a fleet against a real Flotilla server, for load
// tests and demos. Virtual devices speak real DDI over HTTP — one goroutine
// each on a shared transport, jittered polls, real downloads checked against
// their sha256 — and report what a real device would, including the failures
// the configuration injects. With Push, the fleet is push nodes instead.
//
// Every device keeps its own record of what it reported, so a test can hold
// the server's counts against the fleet's own tally.
package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
	"github.com/flotilla-ota/flotilla/push"
)

// LabelSpread assigns one label over the fleet in proportions, e.g.
// region=eu:60,us:40.
type LabelSpread struct {
	Key     string
	Values  []string
	Weights []int
}

// ParseLabelSpread parses "key=value:weight,value:weight" (weights default
// to 1).
func ParseLabelSpread(s string) (LabelSpread, error) {
	key, rest, ok := strings.Cut(s, "=")
	if !ok || key == "" || rest == "" {
		return LabelSpread{}, fmt.Errorf("label spread %q: want key=value:weight,value:weight", s)
	}
	ls := LabelSpread{Key: key}
	for _, part := range strings.Split(rest, ",") {
		v, w, hasW := strings.Cut(part, ":")
		weight := 1
		if hasW {
			n, err := strconv.Atoi(w)
			if err != nil || n < 0 {
				return LabelSpread{}, fmt.Errorf("label spread %q: weight %q is not a whole number", s, w)
			}
			weight = n
		}
		if v == "" {
			return LabelSpread{}, fmt.Errorf("label spread %q: empty value", s)
		}
		ls.Values, ls.Weights = append(ls.Values, v), append(ls.Weights, weight)
	}
	return ls, nil
}

// pick returns the value for the i-th of n devices: contiguous blocks in
// proportion to the weights, so the split is exact and reproducible.
func (ls LabelSpread) pick(i, n int) string {
	total := 0
	for _, w := range ls.Weights {
		total += w
	}
	if total == 0 {
		return ls.Values[0]
	}
	acc := 0
	for j, w := range ls.Weights {
		acc += w
		if i*total < acc*n {
			return ls.Values[j]
		}
	}
	return ls.Values[len(ls.Values)-1]
}

// Config describes the fleet.
type Config struct {
	Server       string // base URL
	Tenant       string // default "default"
	GatewayToken string // devices register themselves with it
	// APIToken (devices:write) registers push nodes; Push mode only.
	APIToken string
	Devices  int
	Prefix   string // device ids are Prefix + number (default "sim-")
	// Poll is how often devices poll; 0 follows the server's sleep.
	Poll time.Duration
	// Rates (0..1) of devices that: fail to install; register and then go
	// silent; download slowly (SlowRate bytes/s); come up unhealthy after
	// installing and roll back; reject cancel requests.
	FailRate, OfflineRate, SlowDownloadRate, UnhealthyRate, RejectCancelRate float64
	SlowRate                                                                 int64
	// InstallTime is how long an install takes (default 100ms).
	InstallTime time.Duration
	Labels      []LabelSpread
	Version     string // running before the first update (default 1.0.0)
	// StoreDir keeps downloaded files (one directory per device); empty
	// discards the bytes after hashing them.
	StoreDir string
	// Push runs push nodes on PushListen instead of polling devices.
	Push       bool
	PushListen string
	// NodeToken is the bearer token push nodes require (the server's
	// --node-token).
	NodeToken  string
	Seed       uint64
	HTTPClient *http.Client
	Log        *slog.Logger
}

// Outcome counters, as the devices saw them.
type Tally struct {
	Devices      int   `json:"devices"`
	Registered   int64 `json:"registered"`
	Offline      int   `json:"offline"`
	Polls        int64 `json:"polls"`
	PollErrors   int64 `json:"pollErrors"`
	Downloads    int64 `json:"downloads"`
	Bytes        int64 `json:"bytes"`
	HashMismatch int64 `json:"hashMismatch"`
	Succeeded    int64 `json:"succeeded"`
	Failed       int64 `json:"failed"` // install failures, unhealthy included
	Unhealthy    int64 `json:"unhealthy"`
	Canceled     int64 `json:"canceled"` // cancel requests accepted
	Rejected     int64 `json:"rejected"` // cancel requests rejected
	InFlight     int64 `json:"inFlight"`
	// Versions counts devices by the version they run now.
	Versions map[string]int `json:"versions"`
}

// devicesPerTransport is how many simulated devices share one HTTP
// Transport (and its idle connection pool).
const devicesPerTransport = 256

// Fleet is a running simulation.
type Fleet struct {
	cfg     Config
	http    *http.Client
	log     *slog.Logger
	devices []*device
	t       counters
	started time.Time
}

type counters struct {
	registered, polls, pollErrors, downloads, bytes, hashMismatch atomic.Int64
	succeeded, failed, unhealthy, canceled, rejected, inFlight    atomic.Int64
}

// fate is what a device was dealt at the start.
type fate struct {
	offline, fail, slow, unhealthy, rejectCancel bool
}

type device struct {
	f          *Fleet
	http       *http.Client
	id         string
	labels     map[string]string
	fate       fate
	rng        *rand.Rand
	mu         sync.Mutex
	version    string
	etag       string          // of the last poll answer
	last       ddi.Poll        // the last poll answer
	done       map[string]bool // action ids finished
	downloaded map[string]bool // action ids whose bytes are in
}

// New validates cfg and deals each device its fate.
func New(cfg Config) (*Fleet, error) {
	if cfg.Server == "" {
		return nil, errors.New("sim: the server URL is required")
	}
	if cfg.Devices <= 0 {
		return nil, errors.New("sim: the number of devices must be positive")
	}
	if cfg.Push && cfg.APIToken == "" {
		return nil, errors.New("sim: push mode registers nodes through the management API and needs an API token (devices:write)")
	}
	if !cfg.Push && cfg.GatewayToken == "" {
		return nil, errors.New("sim: devices register themselves with a gateway token; set one")
	}
	for _, r := range []float64{cfg.FailRate, cfg.OfflineRate, cfg.SlowDownloadRate, cfg.UnhealthyRate, cfg.RejectCancelRate} {
		if r < 0 || r > 1 {
			return nil, fmt.Errorf("sim: rate %v is not between 0 and 1", r)
		}
	}
	cfg.Server = strings.TrimRight(cfg.Server, "/")
	if cfg.Tenant == "" {
		cfg.Tenant = "default"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sim-"
	}
	if cfg.Version == "" {
		cfg.Version = "1.0.0"
	}
	if cfg.InstallTime == 0 {
		cfg.InstallTime = 100 * time.Millisecond
	}
	if cfg.SlowRate <= 0 {
		cfg.SlowRate = 256 << 10
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, http: cfg.HTTPClient, log: cfg.Log}
	// Devices share connections in groups: one Transport per
	// devicesPerTransport devices. A single Transport holding 10k idle
	// connections to one host spends most of its time in tryPutIdleConn,
	// which scans that host's idle list on every request.
	var clients []*http.Client
	if f.http != nil {
		clients = []*http.Client{f.http}
	} else {
		for n := cfg.Devices; n > 0; n -= devicesPerTransport {
			per := min(n, devicesPerTransport) + 16
			clients = append(clients, &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
				MaxIdleConns: per, MaxIdleConnsPerHost: per, IdleConnTimeout: 2 * time.Minute}})
		}
		f.http = clients[0]
	}
	deal := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	// Exact proportions. Offline, failing and unhealthy devices are
	// disjoint (each has one outcome); slow downloads and cancel rejection
	// are dealt independently.
	count := func(rate float64) int { return int(rate*float64(cfg.Devices) + 0.5) }
	if count(cfg.OfflineRate)+count(cfg.FailRate)+count(cfg.UnhealthyRate) > cfg.Devices {
		return nil, errors.New("sim: offline, fail and unhealthy rates add up to more than the fleet")
	}
	offline, fail, unhealthy := make([]bool, cfg.Devices), make([]bool, cfg.Devices), make([]bool, cfg.Devices)
	order := deal.Perm(cfg.Devices)
	for _, set := range []struct {
		to []bool
		n  int
	}{{offline, count(cfg.OfflineRate)}, {fail, count(cfg.FailRate)}, {unhealthy, count(cfg.UnhealthyRate)}} {
		for _, i := range order[:set.n] {
			set.to[i] = true
		}
		order = order[set.n:]
	}
	pick := func(rate float64) []bool {
		out := make([]bool, cfg.Devices)
		for _, i := range deal.Perm(cfg.Devices)[:count(rate)] {
			out[i] = true
		}
		return out
	}
	slow, reject := pick(cfg.SlowDownloadRate), pick(cfg.RejectCancelRate)
	width := len(strconv.Itoa(cfg.Devices - 1))
	for i := 0; i < cfg.Devices; i++ {
		d := &device{f: f, http: clients[i/devicesPerTransport%len(clients)], id: fmt.Sprintf("%s%0*d", cfg.Prefix, width, i), labels: map[string]string{}, version: cfg.Version,
			rng:  rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1)),
			fate: fate{offline: offline[i], fail: fail[i], slow: slow[i], unhealthy: unhealthy[i], rejectCancel: reject[i]},
			done: map[string]bool{}, downloaded: map[string]bool{}}
		for _, ls := range cfg.Labels {
			d.labels[ls.Key] = ls.pick(i, cfg.Devices)
		}
		f.devices = append(f.devices, d)
	}
	return f, nil
}

// DeviceIDs lists the fleet.
func (f *Fleet) DeviceIDs() []string {
	ids := make([]string, len(f.devices))
	for i, d := range f.devices {
		ids[i] = d.id
	}
	return ids
}

// LabelCounts counts the fleet's devices by their value of a label.
func (f *Fleet) LabelCounts(key string) map[string]int {
	out := map[string]int{}
	for _, d := range f.devices {
		out[d.labels[key]]++
	}
	return out
}

// Run runs the fleet until ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	f.started = time.Now()
	if f.cfg.Push {
		return f.runPush(ctx)
	}
	var wg sync.WaitGroup
	for _, d := range f.devices {
		wg.Add(1)
		go func() { defer wg.Done(); d.run(ctx) }()
	}
	wg.Wait()
	return nil
}

// Tally reports the fleet's own counts so far.
func (f *Fleet) Tally() Tally {
	t := Tally{Devices: len(f.devices), Registered: f.t.registered.Load(), Polls: f.t.polls.Load(), PollErrors: f.t.pollErrors.Load(),
		Downloads: f.t.downloads.Load(), Bytes: f.t.bytes.Load(), HashMismatch: f.t.hashMismatch.Load(),
		Succeeded: f.t.succeeded.Load(), Failed: f.t.failed.Load(), Unhealthy: f.t.unhealthy.Load(),
		Canceled: f.t.canceled.Load(), Rejected: f.t.rejected.Load(), InFlight: f.t.inFlight.Load(), Versions: map[string]int{}}
	for _, d := range f.devices {
		if d.fate.offline {
			t.Offline++
		}
		d.mu.Lock()
		t.Versions[d.version]++
		d.mu.Unlock()
	}
	return t
}

// Summary is one line for a live display.
func (t Tally) Summary(elapsed time.Duration) string {
	return fmt.Sprintf("%6.0fs  devices %d (registered %d, offline %d)  polls %d (errors %d)  in flight %d  succeeded %d  failed %d  canceled %d  downloaded %s",
		elapsed.Seconds(), t.Devices, t.Registered, t.Offline, t.Polls, t.PollErrors, t.InFlight, t.Succeeded, t.Failed, t.Canceled, humanBytes(t.Bytes))
}

// Table is the final report.
func (t Tally) Table(w io.Writer, elapsed time.Duration) {
	fmt.Fprintf(w, "\nsimulated fleet after %s\n", elapsed.Round(time.Second))
	rows := [][2]string{
		{"devices", strconv.Itoa(t.Devices)}, {"registered", strconv.FormatInt(t.Registered, 10)}, {"offline (silent)", strconv.Itoa(t.Offline)},
		{"polls", strconv.FormatInt(t.Polls, 10)}, {"poll errors", strconv.FormatInt(t.PollErrors, 10)},
		{"downloads", strconv.FormatInt(t.Downloads, 10)}, {"bytes downloaded", humanBytes(t.Bytes)}, {"sha256 mismatches", strconv.FormatInt(t.HashMismatch, 10)},
		{"succeeded", strconv.FormatInt(t.Succeeded, 10)}, {"failed", strconv.FormatInt(t.Failed, 10)}, {"  of which unhealthy", strconv.FormatInt(t.Unhealthy, 10)},
		{"cancels accepted", strconv.FormatInt(t.Canceled, 10)}, {"cancels rejected", strconv.FormatInt(t.Rejected, 10)}, {"in flight", strconv.FormatInt(t.InFlight, 10)},
	}
	vs := make([]string, 0, len(t.Versions))
	for v := range t.Versions {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		rows = append(rows, [2]string{"running " + v, strconv.Itoa(t.Versions[v])})
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-20s %12s\n", r[0], r[1])
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// --- DDI devices ---

func (d *device) base() string {
	return d.f.cfg.Server + "/" + d.f.cfg.Tenant + "/controller/v1/" + d.id
}

func (d *device) sleep(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads a duration by ±10%.
func (d *device) jitter(dur time.Duration) time.Duration {
	if dur <= 0 {
		return time.Second
	}
	return dur - dur/10 + time.Duration(d.rng.Int64N(int64(dur/5)+1))
}

func (d *device) run(ctx context.Context) {
	first := d.f.cfg.Poll
	if first <= 0 {
		first = 5 * time.Second
	}
	if !d.sleep(ctx, time.Duration(d.rng.Int64N(int64(first)))) {
		return
	}
	registered := false
	for ctx.Err() == nil {
		sleep, err := d.cycle(ctx, !registered)
		if err != nil {
			if ctx.Err() != nil {
				return // stopping: a request cut short is not an error
			}
			d.f.t.pollErrors.Add(1)
			d.f.log.Debug("poll", "device", d.id, "err", err)
			if !d.sleep(ctx, d.jitter(first)) {
				return
			}
			continue
		}
		if !registered {
			registered = true
			d.f.t.registered.Add(1)
		}
		if d.fate.offline {
			return // registered, then silent
		}
		if d.f.cfg.Poll > 0 {
			sleep = d.f.cfg.Poll
		}
		if !d.sleep(ctx, d.jitter(sleep)) {
			return
		}
	}
}

func (d *device) do(ctx context.Context, method, url string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "GatewayToken "+d.f.cfg.GatewayToken)
	req.Header.Set("Accept", "application/hal+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return resp.StatusCode, nil
}

// cycle polls once and acts on the answer; it returns the server's sleep.
func (d *device) cycle(ctx context.Context, first bool) (time.Duration, error) {
	d.f.t.polls.Add(1)
	p, err := d.poll(ctx)
	if err != nil {
		return 0, err
	}
	sleep, err := ddi.ParseSleep(p.Config.Polling.Sleep)
	if err != nil {
		sleep = 30 * time.Second
	}
	if first || p.Links.ConfigData != nil {
		data := map[string]string{"version": d.currentVersion(), "simulated": "true"}
		for k, v := range d.labels {
			data[ddi.AttrLabelPrefix+k] = v
		}
		if _, err := d.do(ctx, "PUT", d.base()+"/configData", ddi.ConfigData{Mode: ddi.ModeMerge, Data: data,
			Status: &ddi.Status{Execution: ddi.ExecClosed, Result: &ddi.Result{Finished: ddi.FinishedSuccess}}}, nil); err != nil {
			return sleep, err
		}
	}
	if d.fate.offline {
		return sleep, nil
	}
	if l := p.Links.CancelAction; l != nil {
		return sleep, d.cancel(ctx, l.Href)
	}
	if l := p.Links.DeploymentBase; l != nil {
		return sleep, d.deploy(ctx, l.Href)
	}
	return sleep, nil
}

// poll asks for the controller base, conditionally: an unchanged answer is
// a 304 with no body, as hawkBit's ETag support allows.
func (d *device) poll(ctx context.Context) (ddi.Poll, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", d.base(), nil)
	if err != nil {
		return ddi.Poll{}, err
	}
	req.Header.Set("Authorization", "GatewayToken "+d.f.cfg.GatewayToken)
	req.Header.Set("Accept", "application/hal+json")
	if d.etag != "" {
		req.Header.Set("If-None-Match", d.etag)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return ddi.Poll{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ddi.Poll{}, err
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return d.last, nil
	case http.StatusOK:
		var p ddi.Poll
		if err := json.Unmarshal(b, &p); err != nil {
			return p, fmt.Errorf("poll: %w", err)
		}
		d.last, d.etag = p, resp.Header.Get("Etag")
		return p, nil
	}
	return ddi.Poll{}, fmt.Errorf("poll: %d %s", resp.StatusCode, bytes.TrimSpace(b))
}

func (d *device) currentVersion() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version
}

func (d *device) feedback(ctx context.Context, url, exec, finished string, details ...string) error {
	_, err := d.do(ctx, "POST", url, ddi.Feedback{Status: &ddi.Status{Execution: exec, Result: &ddi.Result{Finished: finished}, Details: details}}, nil)
	return err
}

func (d *device) cancel(ctx context.Context, href string) error {
	var c ddi.CancelAction
	if _, err := d.do(ctx, "GET", href, nil, &c); err != nil {
		return err
	}
	fb := strings.TrimRight(href, "/") + "/feedback"
	if d.fate.rejectCancel {
		if err := d.feedback(ctx, fb, ddi.ExecRejected, ddi.FinishedNone, "cancel rejected (simulated)"); err != nil {
			return err
		}
		d.f.t.rejected.Add(1)
		return nil
	}
	if err := d.feedback(ctx, fb, ddi.ExecClosed, ddi.FinishedSuccess, "canceled"); err != nil {
		return err
	}
	d.f.t.canceled.Add(1)
	return nil
}

func (d *device) deploy(ctx context.Context, href string) error {
	var db ddi.DeploymentBase
	if _, err := d.do(ctx, "GET", href, nil, &db); err != nil {
		return err
	}
	d.mu.Lock()
	seen := d.done[db.ID]
	d.mu.Unlock()
	if seen {
		return nil // finished; the server has not caught up yet
	}
	fb := strings.Split(href, "?")[0] + "/feedback"
	d.f.t.inFlight.Add(1)
	defer d.f.t.inFlight.Add(-1)
	version := ""
	for _, ch := range db.Deployment.Chunks {
		version = ch.Version
	}
	d.mu.Lock()
	have := d.downloaded[db.ID]
	d.mu.Unlock()
	if !have {
		if err := d.feedback(ctx, fb, ddi.ExecDownload, ddi.FinishedNone, "downloading"); err != nil {
			return err
		}
		for _, ch := range db.Deployment.Chunks {
			for _, a := range ch.Artifacts {
				if err := d.download(ctx, a); err != nil {
					if errors.Is(err, errHashMismatch) {
						d.finish(db.ID)
						d.f.t.failed.Add(1)
						return d.feedback(ctx, fb, ddi.ExecClosed, ddi.FinishedFailure, err.Error())
					}
					return err // retried on the next poll
				}
			}
		}
		if err := d.feedback(ctx, fb, ddi.ExecDownloaded, ddi.FinishedNone, "downloaded"); err != nil {
			return err
		}
		d.mu.Lock()
		d.downloaded[db.ID] = true
		d.mu.Unlock()
	}
	if db.Deployment.Update == ddi.HandlingSkip {
		if db.Deployment.MaintenanceWindow == ddi.WindowUnavailable {
			return nil // install when the window opens
		}
		// A download-only deployment ends with the download.
		d.finish(db.ID)
		d.f.t.succeeded.Add(1)
		return nil
	}
	if err := d.feedback(ctx, fb, ddi.ExecProceeding, ddi.FinishedNone, "installing"); err != nil {
		return err
	}
	if !d.sleep(ctx, d.f.cfg.InstallTime) {
		return ctx.Err()
	}
	var err error
	switch {
	case d.fate.fail:
		err = d.feedback(ctx, fb, ddi.ExecClosed, ddi.FinishedFailure, "install failed (simulated)")
		if err == nil {
			d.f.t.failed.Add(1)
		}
	case d.fate.unhealthy:
		err = d.feedback(ctx, fb, ddi.ExecClosed, ddi.FinishedFailure, "health: failed: simulated", "rolled back to "+d.currentVersion())
		if err == nil {
			d.f.t.failed.Add(1)
			d.f.t.unhealthy.Add(1)
		}
	default:
		err = d.feedback(ctx, fb, ddi.ExecClosed, ddi.FinishedSuccess, "health: ok")
		if err == nil {
			d.f.t.succeeded.Add(1)
			d.mu.Lock()
			d.version = version
			d.mu.Unlock()
		}
	}
	if err == nil {
		d.finish(db.ID)
	}
	return err
}

func (d *device) finish(id string) {
	d.mu.Lock()
	d.done[id] = true
	d.mu.Unlock()
}

var errHashMismatch = errors.New("sha256 mismatch")

func (d *device) download(ctx context.Context, a ddi.Artifact) error {
	url := ""
	if a.Links.DownloadHTTP != nil {
		url = a.Links.DownloadHTTP.Href
	} else if a.Links.Download != nil {
		url = a.Links.Download.Href
	}
	if url == "" {
		return fmt.Errorf("artifact %s has no download link", a.Filename)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	if strings.HasPrefix(url, d.f.cfg.Server) {
		req.Header.Set("Authorization", "GatewayToken "+d.f.cfg.GatewayToken)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("download %s: %d", a.Filename, resp.StatusCode)
	}
	d.f.t.downloads.Add(1)
	var sink io.Writer = io.Discard
	if d.f.cfg.StoreDir != "" {
		dir := filepath.Join(d.f.cfg.StoreDir, d.id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		file, err := os.Create(filepath.Join(dir, filepath.Base(a.Filename)))
		if err != nil {
			return err
		}
		defer file.Close()
		sink = file
	}
	h := sha256.New()
	var body io.Reader = resp.Body
	if d.fate.slow {
		body = &throttled{r: resp.Body, rate: d.f.cfg.SlowRate, ctx: ctx, start: time.Now()}
	}
	n, err := io.Copy(io.MultiWriter(h, sink, countWriter{&d.f.t.bytes}), body)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.Hashes.SHA256 || (a.Size > 0 && n != a.Size) {
		d.f.t.hashMismatch.Add(1)
		return fmt.Errorf("%w: %s: got %s (%d bytes), want %s (%d bytes)", errHashMismatch, a.Filename, got, n, a.Hashes.SHA256, a.Size)
	}
	return nil
}

type countWriter struct{ n *atomic.Int64 }

func (c countWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// throttled limits reads to rate bytes per second on average.
type throttled struct {
	r     io.Reader
	rate  int64
	ctx   context.Context
	start time.Time
	n     int64
}

func (t *throttled) Read(p []byte) (int, error) {
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	n, err := t.r.Read(p)
	t.n += int64(n)
	due := t.start.Add(time.Duration(float64(t.n) / float64(t.rate) * float64(time.Second)))
	if wait := time.Until(due); wait > 0 {
		select {
		case <-t.ctx.Done():
			return n, t.ctx.Err()
		case <-time.After(wait):
		}
	}
	return n, err
}

// --- push nodes ---

// runPush serves every node under /node/ID/ on one listener, registers the
// nodes with the server, and serves until ctx ends.
func (f *Fleet) runPush(ctx context.Context) error {
	listen := f.cfg.PushListen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("sim: push listener: %w", err)
	}
	stateRoot, err := os.MkdirTemp("", "flotilla-sim-nodes")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateRoot)
	mux := http.NewServeMux()
	for _, d := range f.devices {
		n, err := push.NewNode(push.NodeConfig{StateDir: filepath.Join(stateRoot, d.id), Version: f.cfg.Version, DeviceID: d.id, Labels: d.labels,
			Token: f.cfg.NodeToken, Logger: f.log, MaxRate: map[bool]int64{true: f.cfg.SlowRate}[d.fate.slow],
			Installer: push.InstallerFunc(func(ctx context.Context, a push.Artifact, _ string) error { return d.install(ctx, a) })})
		if err != nil {
			return fmt.Errorf("sim: node %s: %w", d.id, err)
		}
		prefix := "/node/" + d.id
		var h http.Handler = http.StripPrefix(prefix, n)
		if d.fate.offline {
			h = http.HandlerFunc(hangUp)
		}
		mux.Handle(prefix+"/", h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	f.log.Info("push nodes listening", "addr", base)
	for _, d := range f.devices {
		if err := f.registerNode(ctx, d, base+"/node/"+d.id); err != nil {
			return err
		}
		f.t.registered.Add(1)
	}
	<-ctx.Done()
	return nil
}

// install is a push node's simulated installer.
func (d *device) install(ctx context.Context, a push.Artifact) error {
	d.f.t.inFlight.Add(1)
	defer d.f.t.inFlight.Add(-1)
	d.f.t.downloads.Add(1)
	d.f.t.bytes.Add(a.Size)
	if !d.sleep(ctx, d.f.cfg.InstallTime) {
		return ctx.Err()
	}
	switch {
	case d.fate.fail:
		d.f.t.failed.Add(1)
		return errors.New("install failed (simulated)")
	case d.fate.unhealthy:
		d.f.t.failed.Add(1)
		d.f.t.unhealthy.Add(1)
		return errors.New("health: failed: simulated; rolled back")
	}
	d.f.t.succeeded.Add(1)
	d.mu.Lock()
	d.version = a.Version
	d.mu.Unlock()
	return nil
}

// hangUp drops the connection, as an unreachable node would.
func hangUp(w http.ResponseWriter, r *http.Request) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

func (f *Fleet) registerNode(ctx context.Context, d *device, address string) error {
	call := func(method, path string, body any) (int, []byte, error) {
		b, _ := json.Marshal(body)
		req, err := http.NewRequestWithContext(ctx, method, f.cfg.Server+path, bytes.NewReader(b))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+f.cfg.APIToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := f.http.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, out, nil
	}
	code, body, err := call("POST", "/api/v1/devices", map[string]any{"id": d.id, "labels": d.labels, "address": address})
	if err == nil && code == http.StatusConflict {
		code, body, err = call("PATCH", "/api/v1/devices/"+d.id, map[string]any{"labels": d.labels, "address": address})
	}
	if err != nil {
		return fmt.Errorf("sim: register node %s: %w", d.id, err)
	}
	if code >= 300 {
		return fmt.Errorf("sim: register node %s: %d %s", d.id, code, bytes.TrimSpace(body))
	}
	return nil
}
