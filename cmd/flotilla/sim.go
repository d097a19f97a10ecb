package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ota/flotilla/internal/cli"
	"github.com/flotilla-ota/flotilla/internal/sim"
)

// simCmd drives a real server with a simulated fleet.
func simCmd(e cli.Env, stdout, stderr io.Writer) *cobra.Command {
	var cfg sim.Config
	var labels []string
	var logs cli.LogFlags
	var duration, every time.Duration
	var asJSON bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a fleet of devices against a server",
		Long: `Run N virtual devices against a Flotilla server, for load tests and demos. Each device
speaks real DDI over HTTP (one goroutine each, shared connections, jittered polls),
registers itself with the gateway token, downloads artifacts and checks their sha256,
and reports what a real device would, including the failures you inject. With --push the
fleet is push nodes instead, registered through the management API; with --dmf it is
things behind a DMF gateway on RabbitMQ (the server runs with --amqp-url).

A live summary prints every --summary-every; the final table prints on exit (Ctrl-C, or
after --duration).`,
		Example: `  flotilla sim --server http://127.0.0.1:8080 --gateway-token $GW --devices 1000 --poll 10s \
      --fail-rate 0.05 --offline-rate 0.02 --labels region=eu:60,us:40`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.Logger(stderr)
			if err != nil {
				return err
			}
			cfg.Log = log
			for _, l := range labels {
				ls, err := sim.ParseLabelSpread(l)
				if err != nil {
					return err
				}
				cfg.Labels = append(cfg.Labels, ls)
			}
			if every <= 0 {
				return fmt.Errorf("--summary-every must be positive")
			}
			fleet, err := sim.New(cfg)
			if err != nil {
				return err
			}
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- fleet.Run(ctx) }()
			kind := map[bool]string{false: "DDI devices", true: "push nodes"}[cfg.Push]
			if cfg.DMF != "" {
				kind = "DMF devices"
			}
			fmt.Fprintf(stdout, "simulating %d %s against %s\n", cfg.Devices, kind, cfg.Server)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case err := <-done:
					t := fleet.Tally()
					if asJSON {
						enc := json.NewEncoder(stdout)
						enc.SetIndent("", "  ")
						enc.Encode(t)
					} else {
						t.Table(stdout, time.Since(start))
					}
					return err
				case <-tick.C:
					if !asJSON {
						fmt.Fprintln(stdout, fleet.Tally().Summary(time.Since(start)))
					}
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", e.Str("FLOTILLA_SERVER", "http://127.0.0.1:8080"), "server base URL (FLOTILLA_SERVER)")
	f.StringVar(&cfg.Tenant, "tenant", e.Str("FLOTILLA_TENANT", "default"), "tenant (FLOTILLA_TENANT)")
	f.StringVar(&cfg.GatewayToken, "gateway-token", e.Str("FLOTILLA_GATEWAY_TOKEN", ""), "gateway token the devices register with (FLOTILLA_GATEWAY_TOKEN)")
	f.StringVar(&cfg.APIToken, "token", e.Str("FLOTILLA_TOKEN", ""), "API token with devices:write, to register push nodes (FLOTILLA_TOKEN)")
	f.IntVar(&cfg.Devices, "devices", 100, "number of devices")
	f.StringVar(&cfg.Prefix, "prefix", "sim-", "device id prefix")
	f.DurationVar(&cfg.Poll, "poll", 30*time.Second, "poll interval (0: follow the server's)")
	f.Float64Var(&cfg.FailRate, "fail-rate", 0, "share of devices whose install fails (0..1)")
	f.Float64Var(&cfg.OfflineRate, "offline-rate", 0, "share of devices that register and then go silent")
	f.Float64Var(&cfg.SlowDownloadRate, "slow-download-rate", 0, "share of devices that download at --slow-rate")
	f.Int64Var(&cfg.SlowRate, "slow-rate", 256<<10, "download speed of slow devices, bytes per second")
	f.Float64Var(&cfg.UnhealthyRate, "unhealthy-rate", 0, "share of devices that come up unhealthy after installing and roll back")
	f.Float64Var(&cfg.RejectCancelRate, "reject-cancel-rate", 0, "share of devices that reject cancel requests")
	f.DurationVar(&cfg.InstallTime, "install-time", 100*time.Millisecond, "how long an install takes")
	f.StringArrayVar(&labels, "labels", nil, "spread a label over the fleet, e.g. region=eu:60,us:40 (repeatable)")
	f.StringVar(&cfg.Version, "version", "1.0.0", "version the devices run at the start")
	f.StringVar(&cfg.StoreDir, "store-dir", "", "keep downloaded files here (default: hash them and discard the bytes)")
	f.BoolVar(&cfg.Push, "push", false, "run push nodes instead of polling devices")
	f.StringVar(&cfg.DMF, "dmf", e.Str("FLOTILLA_SIM_DMF", ""), "run DMF devices instead: things behind a gateway on this RabbitMQ (amqp://USER:PASSWORD@HOST:5672/VHOST), answering the server's DMF messages (FLOTILLA_SIM_DMF)")
	f.StringVar(&cfg.DMFExchange, "dmf-exchange", "dmf.exchange", "the server's DMF exchange (see the exchange parameter of --amqp-url)")
	f.StringVar(&cfg.PushListen, "push-listen", "127.0.0.1:0", "address the push nodes listen on")
	f.IntVar(&cfg.MaxConns, "max-conns", sim.DefaultMaxConns, "connections the fleet holds to the server at most; beyond that devices wait for one (each holds a file descriptor on both sides)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed for dealing fates and jitter")
	f.DurationVar(&duration, "duration", 0, "stop after this long (default: until interrupted)")
	f.DurationVar(&every, "summary-every", 5*time.Second, "how often to print the live summary")
	f.BoolVar(&asJSON, "json", false, "print only the final tally, as JSON")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the simulator itself to this file")
	logs.Register(cmd, e)
	return cmd
}
