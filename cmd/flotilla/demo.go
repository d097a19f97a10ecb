package main

import (
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ota/flotilla/internal/cli"
	"github.com/flotilla-ota/flotilla/internal/demo"
	"github.com/flotilla-ota/flotilla/internal/server"
)

// demoCmd runs a server with a simulated fleet: the README's first command.
func demoCmd(e cli.Env, stdout, stderr io.Writer) *cobra.Command {
	var cfg demo.Config
	var logs cli.LogFlags
	var amqpURL string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a server with a simulated fleet and sample artifacts",
		Long: `Start the control plane on the embedded defaults with a simulated fleet of devices
(default 50) that poll over DDI, and upload sample artifacts (demo-firmware 1.1.0 and
2.0.0). It prints the UI address and the admin token; start a rollout in the UI or with
the printed curl command and watch the devices update.

Without --data-dir the data lives in a temporary directory removed on exit.
FLOTILLA_ADMIN_TOKEN sets the admin token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.Logger(stderr)
			if err != nil {
				return err
			}
			if cfg.Server.DataDir == "" {
				dir, err := os.MkdirTemp("", "flotilla-demo-")
				if err != nil {
					return err
				}
				cfg.Server.DataDir, cfg.TempDir = dir, true
			}
			cfg.Server.AdminToken = e("FLOTILLA_ADMIN_TOKEN")
			if amqpURL != "" {
				if cfg.Server.DMF, err = server.ParseAMQP([]string{amqpURL}); err != nil {
					return err
				}
			}
			return demo.Run(cmd.Context(), cfg, stdout, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server.Listen, "listen", e.Str("FLOTILLA_LISTEN", "127.0.0.1:8080"), "address to listen on (FLOTILLA_LISTEN)")
	f.StringVar(&cfg.Server.DataDir, "data-dir", "", "keep the demo's data here (default: a temporary directory)")
	f.IntVar(&cfg.Devices, "devices", 50, "simulated devices")
	f.DurationVar(&cfg.Poll, "poll", 3*time.Second, "how often the simulated devices poll")
	f.Float64Var(&cfg.FailRate, "fail-rate", 0, "share of simulated devices whose install fails (0..1)")
	f.StringVar(&amqpURL, "amqp-url", e.Str("FLOTILLA_AMQP_URL", ""), "also serve hawkBit's DMF API over this RabbitMQ, and simulate DMF devices on it (FLOTILLA_AMQP_URL)")
	f.IntVar(&cfg.DMFDevices, "dmf-devices", 0, "simulated DMF devices with --amqp-url (default: a quarter of --devices)")
	logs.Register(cmd, e)
	return cmd
}
