// Package sim simulates a fleet against a real Flotilla server, for load
// tests and demos. Virtual devices speak real DDI over HTTP — one goroutine
// each, keep-alive connections shared in groups, jittered polls, real
// downloads checked against their sha256 — and report what a real device
// would, including the failures the configuration injects. With Push, the
// fleet is push nodes instead.
//
// Every device keeps its own record of what it reported, so a test can hold
// the server's counts against the fleet's own tally.
package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
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
	// DMF runs the fleet as things behind a DMF gateway on this broker
	// (amqp://...), talking to the server's DMFExchange (default
	// dmf.exchange).
	DMF, DMFExchange string
	Seed             uint64
	// MaxConns bounds the connections the fleet holds to the server
	// (default DefaultMaxConns); beyond it devices wait for one.
	MaxConns   int
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

// Fleet is a running simulation.
type Fleet struct {
	cfg     Config
	http    *http.Client
	log     *slog.Logger
	devices []*device
	t       counters
	started time.Time
}

// devicesPerGroup is how many simulated devices share one set of
// connections: enough for connections to be reused across devices (a
// fleet of 100k polling every 30 s keeps a few hundred open, where a
// connection per device would take 100k file descriptors), few enough that
// the group's lock is not contended.
const devicesPerGroup = 256

// DefaultMaxConns is the fleet's connection budget: when the server falls
// behind, each request in flight holds a connection, and 100k devices
// would hold as many, on both sides of loopback, as soon as their
// answers queue. A process that runs out of file descriptors fails
// requests (and a device whose request failed waits a poll interval), so
// the measure would be of the limit, not of the server.
const DefaultMaxConns = 8192

type counters struct {
	registered, polls, pollErrors, downloads, bytes, hashMismatch atomic.Int64
	succeeded, failed, unhealthy, canceled, rejected, inFlight    atomic.Int64
}

// fate is what a device was dealt at the start.
type fate struct {
	offline, fail, slow, unhealthy, rejectCancel bool
}

type device struct {
	f    *Fleet
	http doer
	id   string
	// baseURL is built once: every poll names it, and building it anew
	// each time was a tenth of the simulator's poll.
	baseURL    string
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
	if cfg.Push && cfg.DMF != "" {
		return nil, errors.New("sim: choose push nodes or DMF devices, not both")
	}
	if cfg.DMFExchange == "" {
		cfg.DMFExchange = "dmf.exchange"
	}
	if !cfg.Push && cfg.DMF == "" && cfg.GatewayToken == "" {
		return nil, errors.New("sim: devices register themselves with a gateway token; set one")
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("sim: --max-conns %d: the connection budget must be positive (0: %d)", cfg.MaxConns, DefaultMaxConns)
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
	if f.http == nil {
		f.http = &http.Client{Timeout: requestTimeout}
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
	var client doer = f.http
	groups := (cfg.Devices + devicesPerGroup - 1) / devicesPerGroup
	perGroup := max(4, cmp.Or(cfg.MaxConns, DefaultMaxConns)/groups)
	for i := 0; i < cfg.Devices; i++ {
		// Devices share connections to the server in groups (see
		// connClient), unless the caller brought its own HTTP client.
		if cfg.HTTPClient == nil && !cfg.Push && cfg.DMF == "" && i%devicesPerGroup == 0 {
			c, err := newConnClient(cfg.Server, f.http)
			if err != nil {
				return nil, err
			}
			c.slots = make(chan struct{}, perGroup)
			client = c
		}
		d := &device{f: f, http: client, id: fmt.Sprintf("%s%0*d", cfg.Prefix, width, i), labels: map[string]string{}, version: cfg.Version,
			rng:  rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1)),
			fate: fate{offline: offline[i], fail: fail[i], slow: slow[i], unhealthy: unhealthy[i], rejectCancel: reject[i]},
			done: map[string]bool{}, downloaded: map[string]bool{}}
		d.baseURL = cfg.Server + "/" + cfg.Tenant + "/controller/v1/" + d.id
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
	if f.cfg.DMF != "" {
		return f.runDMF(ctx)
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
