package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/flotilla-ota/flotilla/internal/agent"
)

// AgentCommand is `flotilla agent`, also the root of flotilla-agent.
func AgentCommand(e Env, stdout, stderr io.Writer) *cobra.Command {
	var cfg agent.Config
	var logs LogFlags
	var labels, attrs, configFile string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the device agent: poll for updates, install, check health, roll back",
		Long: `Run the Flotilla device agent. It polls the server over DDI, downloads with resume
and verification, installs with the built-in file installer (--target) or a command
(--install-command), checks health (--health-command or --health-url) and rolls back
when the device is unhealthy. Every flag can be set by FLOTILLA_<FLAG> or in a JSON
--config file whose keys are flag names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := ApplyConfigFile(cmd.Flags(), configFile, e); err != nil {
					return err
				}
			}
			log, err := logs.Logger(stderr)
			if err != nil {
				return err
			}
			if cfg.Labels, err = ParseKV(labels); err != nil {
				return fmt.Errorf("--labels: %w", err)
			}
			if cfg.Attributes, err = ParseKV(attrs); err != nil {
				return fmt.Errorf("--attributes: %w", err)
			}
			if cfg.Listen != "" && cfg.ListenToken == "" && !cfg.InsecureNoAuth {
				return Usagef("--listen needs --listen-token: the node token the server returned when the device was registered with its address " +
					"(or from POST /api/v1/devices/ID/node-token); without it anyone who reaches the port could install software. " +
					"--insecure-no-auth serves without a token")
			}
			a, err := agent.New(cfg, log)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", e.Str("FLOTILLA_CONFIG", ""), "JSON file of settings keyed by flag name (FLOTILLA_CONFIG)")
	f.StringVar(&cfg.Server, "server", e.Str("FLOTILLA_SERVER", ""), "server base URL, e.g. http://127.0.0.1:8080 (FLOTILLA_SERVER)")
	f.StringVar(&cfg.Tenant, "tenant", e.Str("FLOTILLA_TENANT", "default"), "tenant (FLOTILLA_TENANT)")
	f.StringVar(&cfg.DeviceID, "device-id", e.Str("FLOTILLA_DEVICE_ID", ""), "device id (default: /etc/machine-id) (FLOTILLA_DEVICE_ID)")
	f.StringVar(&cfg.Token, "token", e.Str("FLOTILLA_TOKEN", ""), "device token (TargetToken) (FLOTILLA_TOKEN)")
	f.StringVar(&cfg.GatewayToken, "gateway-token", e.Str("FLOTILLA_GATEWAY_TOKEN", ""), "tenant gateway token; the device registers itself (FLOTILLA_GATEWAY_TOKEN)")
	f.StringVar(&labels, "labels", e.Str("FLOTILLA_LABELS", ""), "labels to report, k=v,k2=v2 (FLOTILLA_LABELS)")
	f.StringVar(&attrs, "attributes", e.Str("FLOTILLA_ATTRIBUTES", ""), "attributes to report, k=v,k2=v2 (FLOTILLA_ATTRIBUTES)")
	f.StringVar(&cfg.Channel, "channel", e.Str("FLOTILLA_CHANNEL", ""), "release channel to join (sets the label channel) (FLOTILLA_CHANNEL)")
	f.StringVar(&cfg.StateDir, "state-dir", e.Str("FLOTILLA_STATE_DIR", "/var/lib/flotilla-agent"), "state directory (downloads, journal, version) (FLOTILLA_STATE_DIR)")
	f.StringVar(&cfg.CurrentVersion, "current-version", e.Str("FLOTILLA_CURRENT_VERSION", ""), "version installed before the agent's first update (FLOTILLA_CURRENT_VERSION)")
	f.StringVar(&cfg.Target, "target", e.Str("FLOTILLA_TARGET", ""), "file the built-in installer replaces atomically (previous kept as TARGET.prev) (FLOTILLA_TARGET)")
	f.StringVar(&cfg.InstallCommand, "install-command", e.Str("FLOTILLA_INSTALL_COMMAND", ""), "shell command that installs {file} ({version}, {name} also substituted) (FLOTILLA_INSTALL_COMMAND)")
	f.StringVar(&cfg.RollbackCommand, "rollback-command", e.Str("FLOTILLA_ROLLBACK_COMMAND", ""), "shell command that restores the previous version (FLOTILLA_ROLLBACK_COMMAND)")
	f.StringVar(&cfg.HealthCommand, "health-command", e.Str("FLOTILLA_HEALTH_COMMAND", ""), "shell command that exits 0 when the device is healthy (FLOTILLA_HEALTH_COMMAND)")
	f.StringVar(&cfg.HealthURL, "health-url", e.Str("FLOTILLA_HEALTH_URL", ""), "URL that answers 2xx when the device is healthy (FLOTILLA_HEALTH_URL)")
	f.DurationVar(&cfg.HealthGrace, "health-grace", e.Duration("FLOTILLA_HEALTH_GRACE", 30e9), "how long the device has to become healthy after an install (FLOTILLA_HEALTH_GRACE)")
	f.DurationVar(&cfg.HealthInterval, "health-interval", e.Duration("FLOTILLA_HEALTH_INTERVAL", 1e9), "pause between health probes (FLOTILLA_HEALTH_INTERVAL)")
	f.DurationVar(&cfg.FirstCheck, "first-check", e.Duration("FLOTILLA_FIRST_CHECK", 10e9), "longest random wait before the first poll (FLOTILLA_FIRST_CHECK)")
	f.StringVar(&cfg.Listen, "listen", e.Str("FLOTILLA_AGENT_LISTEN", ""), "serve the push protocol on this address (e.g. :8080), so the server can push updates (FLOTILLA_AGENT_LISTEN)")
	f.StringVar(&cfg.ListenToken, "listen-token", e.Str("FLOTILLA_LISTEN_TOKEN", ""), "bearer token the server must send to the push listener (FLOTILLA_LISTEN_TOKEN)")
	f.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", e.Str("FLOTILLA_INSECURE_NO_AUTH", "") == "true", "serve --listen without a token: anyone who reaches the port can install software (FLOTILLA_INSECURE_NO_AUTH)")
	f.StringVar(&cfg.Cert, "cert", e.Str("FLOTILLA_CERT", ""), "client certificate (PEM) for mutual TLS with the server (FLOTILLA_CERT)")
	f.StringVar(&cfg.Key, "key", e.Str("FLOTILLA_KEY", ""), "the client certificate's private key (PEM) (FLOTILLA_KEY)")
	f.StringVar(&cfg.CA, "ca", e.Str("FLOTILLA_CA", ""), "CA (PEM) the server's certificate must chain to, instead of the system's (FLOTILLA_CA)")
	f.StringVar(&cfg.Trust, "trust", e.Str("FLOTILLA_TRUST", ""), "the tenant's pinned TUF root.json (from flotilla trust init): install only releases its offline keys signed, refuse downgrades and stale metadata (FLOTILLA_TRUST)")
	f.BoolVar(&cfg.NoFetch, "no-fetch", e.Str("FLOTILLA_NO_FETCH", "") == "true", "push node: never fetch from object storage, wait for the server to send the bytes (FLOTILLA_NO_FETCH)")
	f.Int64Var(&cfg.MaxDownloadRate, "max-download-rate", e.Int64("FLOTILLA_MAX_DOWNLOAD_RATE", 0), "download speed limit in bytes per second (0: none) (FLOTILLA_MAX_DOWNLOAD_RATE)")
	logs.Register(cmd, e)
	return cmd
}
