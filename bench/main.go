// Command bench holds Flotilla to ratios against baselines measured in the
// same run on the same machine: machines are noisy, so absolute figures are
// not comparable across runs, ratios are. Every scenario prints its figure,
// its baseline, the ratio and its target (issues #8 and #18).
//
//	go run ./bench -quick        # every scenario, scaled down (under 10 minutes)
//	go run ./bench               # the full sizes
//	go run ./bench -only poll    # one scenario
//
// Results are printed as a Markdown table, ready for BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

// result is one row of the table.
type result struct {
	Name     string
	Figure   string
	Baseline string
	Ratio    float64
	Target   string
	Pass     bool
	Note     string
}

type scenario struct {
	name string
	run  func(ctx context.Context, o opts) ([]result, error)
}

type opts struct {
	quick    bool
	postgres string
	log      *slog.Logger
	out      io.Writer
	tmp      string
	// windowProfile, when set, is where a scenario writes a CPU profile of
	// its measured section only (see -cpuprofile-window).
	windowProfile string
}

// profileWindow starts a CPU profile of the measured section when asked
// for; the returned func stops it.
func (o opts) profileWindow() func() {
	if o.windowProfile == "" {
		return func() {}
	}
	stop, err := startProfile(o.windowProfile)
	if err != nil {
		o.logf("profile: %v", err)
		return func() {}
	}
	return stop
}

// startProfile writes a CPU profile of this process to path until the
// returned func is called.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func (o opts) logf(format string, args ...any) { fmt.Fprintf(o.out, "  · "+format+"\n", args...) }

var scenarios = []scenario{
	{"poll", runPoll},
	{"rollout", runRolloutScale},
	{"e2e", runE2E},
	{"fleet", runFleet},
	{"download", runDownload},
	{"memory", runMemory},
	{"push", runPush},
	{"devicelist", runDeviceList},
	{"signed", runSigned},
	{"dmf", runDMF},
	{"preview", runPreview},
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "scaled-down sizes, all scenarios in under 10 minutes")
	only := fs.String("only", "", "comma-separated scenarios to run: "+names())
	pg := fs.String("postgres", os.Getenv("FLOTILLA_TEST_POSTGRES"), "PostgreSQL DSN for the Postgres rollout figure (default $FLOTILLA_TEST_POSTGRES)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (server included) to this file")
	windowProfile := fs.String("cpuprofile-window", "", "write a CPU profile of the measured section only (e2e, dmf, preview, the largest rollout; memory: the server process from start to stop) to this file; e2e and fleet also write the simulator's to FILE.sim")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" && *windowProfile != "" {
		return fmt.Errorf("-cpuprofile and -cpuprofile-window are exclusive")
	}
	if *cpuProfile != "" {
		stop, err := startProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	tmp, err := os.MkdirTemp("", "flotilla-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	o := opts{quick: *quick, postgres: *pg, log: slog.New(slog.DiscardHandler), out: stdout, tmp: tmp, windowProfile: *windowProfile}
	mode := "full"
	if o.quick {
		mode = "quick"
	}
	fmt.Fprintf(stdout, "flotilla bench (%s) — %s, %d CPUs, %s, %s\n", mode, runtime.Version(), runtime.NumCPU(), cpuModel(), time.Now().UTC().Format(time.RFC3339))
	var all []result
	failed := 0
	for _, sc := range scenarios {
		if *only != "" && !contains(strings.Split(*only, ","), sc.name) {
			continue
		}
		fmt.Fprintf(stdout, "\n## %s\n", sc.name)
		start := time.Now()
		rs, err := sc.run(context.Background(), o)
		if err != nil {
			fmt.Fprintf(stdout, "  %s failed: %v\n", sc.name, err)
			failed++
			all = append(all, result{Name: sc.name, Figure: "error", Note: err.Error()})
			continue
		}
		for _, r := range rs {
			fmt.Fprintf(stdout, "  %-44s %-28s baseline %-28s ratio %6.2f  target %-10s %s\n", r.Name, r.Figure, r.Baseline, r.Ratio, r.Target, verdict(r.Pass))
		}
		fmt.Fprintf(stdout, "  (%s in %s)\n", sc.name, time.Since(start).Round(time.Second))
		all = append(all, rs...)
	}
	fmt.Fprintf(stdout, "\n| benchmark | figure | baseline (same run) | ratio | target | |\n|---|---|---|---|---|---|\n")
	for _, r := range all {
		note := ""
		if r.Note != "" {
			note = " — " + r.Note
		}
		fmt.Fprintf(stdout, "| %s | %s | %s | %.2f | %s | %s%s |\n", r.Name, r.Figure, r.Baseline, r.Ratio, r.Target, verdict(r.Pass), note)
	}
	if failed > 0 {
		return fmt.Errorf("%d scenario(s) failed to run", failed)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func names() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func rate(n float64, unit string) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.2fM %s", n/1e6, unit)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk %s", n/1e3, unit)
	}
	return fmt.Sprintf("%.1f %s", n, unit)
}
