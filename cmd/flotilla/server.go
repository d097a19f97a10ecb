package main

import (
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ota/flotilla/internal/cli"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/demo"
	"github.com/flotilla-ota/flotilla/internal/server"
)

func serverCmd(e cli.Env, stdout, stderr io.Writer) *cobra.Command {
	var cfg server.Config
	var logs cli.LogFlags
	var demoDevices int
	var memoryLimit string
	var amqpURLs []string
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane",
		Long: `Run the Flotilla control plane: management API, DDI device API, web UI and scheduler.

With no flags it keeps everything in ./flotilla-data: a SQLite database and a blob
directory. The first start creates the tenant "default" and prints an admin token once.
FLOTILLA_ADMIN_TOKEN sets the admin token instead; FLOTILLA_GATEWAY_TOKEN (16+
characters) creates a gateway token devices can register themselves with. The
credentials the server must read back (device and push-node tokens) are sealed with
the key in DATA_DIR/secret.key (mode 0600, created on first start) or
FLOTILLA_SECRET_KEY (32 random bytes, base64).

To scale out, run several replicas with --database-url postgres://... and
--blob-url s3://BUCKET?endpoint=HOST, the same FLOTILLA_ADMIN_TOKEN and
FLOTILLA_SECRET_KEY on each, behind a load balancer; run "flotilla migrate" before
a rolling upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.Logger(stderr)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if cfg.DMF, err = server.ParseAMQP(amqpURLs); err != nil {
				return err
			}
			if err := server.ApplyMemoryLimit(memoryLimit, e); err != nil {
				return err
			}
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			if demoDevices > 0 {
				return demo.Run(ctx, demo.Config{Server: cfg, Devices: demoDevices}, stdout, log)
			}
			srv, err := server.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer srv.Close()
			ln, err := server.Listen(srv.Config.Listen)
			if err != nil {
				return err
			}
			srv.Banner(stdout, ln.Addr().String())
			log.Info("serving", "addr", ln.Addr().String())
			return srv.Serve(ctx, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", e.Str("FLOTILLA_LISTEN", "127.0.0.1:8080"), "address to listen on (FLOTILLA_LISTEN)")
	f.StringVar(&cfg.DataDir, "data-dir", e.Str("FLOTILLA_DATA_DIR", "flotilla-data"), "directory for the SQLite database, blobs and admin token (FLOTILLA_DATA_DIR)")
	f.StringVar(&cfg.DatabaseURL, "database-url", e.Str("FLOTILLA_DATABASE_URL", ""), "sqlite://PATH or postgres://... (default sqlite://DATA_DIR/flotilla.db) (FLOTILLA_DATABASE_URL)")
	f.StringVar(&cfg.BlobDir, "blob-dir", e.Str("FLOTILLA_BLOB_DIR", ""), "directory for artifact bytes (default DATA_DIR/blobs) (FLOTILLA_BLOB_DIR)")
	f.StringVar(&cfg.BlobURL, "blob-url", e.Str("FLOTILLA_BLOB_URL", ""), "blob store: s3://BUCKET?endpoint=HOST:PORT[&insecure=true][&create=true] (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or file:///PATH (FLOTILLA_BLOB_URL)")
	f.BoolVar(&cfg.PresignDownloads, "presign-downloads", e.Str("FLOTILLA_PRESIGN_DOWNLOADS", "") == "true", "DDI download-http links and push deliveries go straight to the blob store, presigned (FLOTILLA_PRESIGN_DOWNLOADS)")
	f.StringVar(&cfg.PublicURL, "public-url", e.Str("FLOTILLA_PUBLIC_URL", ""), "externally visible base URL used in links, e.g. https://ota.example.com (FLOTILLA_PUBLIC_URL)")
	f.Int64Var(&cfg.MaxArtifactSize, "max-artifact-size", e.Int64("FLOTILLA_MAX_ARTIFACT_SIZE", 4<<30), "largest accepted artifact in bytes (FLOTILLA_MAX_ARTIFACT_SIZE)")
	f.DurationVar(&cfg.PollInterval, "poll-interval", e.Duration("FLOTILLA_POLL_INTERVAL", 0), "DDI polling interval told to devices (default 5m) (FLOTILLA_POLL_INTERVAL)")
	f.DurationVar(&cfg.OfflineAfter, "offline-after", e.Duration("FLOTILLA_OFFLINE_AFTER", 0), "a device unseen this long is offline (default 2*poll-interval+1m) (FLOTILLA_OFFLINE_AFTER)")
	f.DurationVar(&cfg.FeedbackHold, "feedback-hold", e.Duration("FLOTILLA_FEEDBACK_HOLD", 0), "how long a device's intermediate feedback (download, downloaded, proceeding) may wait in memory to be written with its next report; a crash loses at most that much history, never an outcome (default 1s with SQLite, off with PostgreSQL; negative: off) (FLOTILLA_FEEDBACK_HOLD)")
	f.IntVar(&cfg.PushWorkers, "push-workers", int(e.Int64("FLOTILLA_PUSH_WORKERS", 16)), "push nodes updated at once (FLOTILLA_PUSH_WORKERS)")
	f.BoolVar(&cfg.SporeOpen, "spore-open", e.Str("FLOTILLA_SPORE_OPEN", "") == "true", "serve the SPORE-compatible /api/cluster, /api/rollout and /api/registry endpoints without a token, as the default tenant (FLOTILLA_SPORE_OPEN)")
	f.DurationVar(&cfg.SchedulerLease, "scheduler-lease", e.Duration("FLOTILLA_SCHEDULER_LEASE", 15*time.Second), "how long a replica's claim on a rollout lasts without renewal: the failover time (FLOTILLA_SCHEDULER_LEASE)")
	f.DurationVar(&cfg.SchedulerTick, "scheduler-tick", e.Duration("FLOTILLA_SCHEDULER_TICK", 0), "how often the scheduler looks at running rollouts when nothing wakes it (default 1s) (FLOTILLA_SCHEDULER_TICK)")
	f.StringVar(&cfg.ReplicaID, "replica-id", e.Str("FLOTILLA_REPLICA_ID", ""), "this replica's name in leases and logs, e.g. the pod name (default: random) (FLOTILLA_REPLICA_ID)")
	f.DurationVar(&cfg.PresignTTL, "presign-ttl", e.Duration("FLOTILLA_PRESIGN_TTL", time.Hour), "how long presigned download links stay valid (FLOTILLA_PRESIGN_TTL)")
	f.DurationVar(&cfg.PushLease, "push-lease", e.Duration("FLOTILLA_PUSH_LEASE", 15*time.Second), "the same for push deliveries (FLOTILLA_PUSH_LEASE)")
	f.StringVar(&cfg.TLSCert, "tls-cert", e.Str("FLOTILLA_TLS_CERT", ""), "serve HTTPS with this PEM certificate (chain); re-read on change or SIGHUP (FLOTILLA_TLS_CERT)")
	f.StringVar(&cfg.TLSKey, "tls-key", e.Str("FLOTILLA_TLS_KEY", ""), "the certificate's PEM private key (FLOTILLA_TLS_KEY)")
	f.StringVar(&cfg.ClientCA, "client-ca", e.Str("FLOTILLA_CLIENT_CA", ""), "PEM CA whose client certificates authenticate devices on DDI (common name = device id) (FLOTILLA_CLIENT_CA)")
	f.StringSliceVar(&cfg.TrustedProxies, "trusted-proxy", splitList(e.Str("FLOTILLA_TRUSTED_PROXY", "")), "CIDR of a TLS-terminating reverse proxy whose X-Forwarded-For and client-certificate headers (X-Ssl-Client-Cn, X-Ssl-Issuer-Hash-N) count; repeatable (FLOTILLA_TRUSTED_PROXY, comma-separated)")
	f.DurationVar(&cfg.BodyReadTimeout, "body-read-timeout", e.Duration("FLOTILLA_BODY_READ_TIMEOUT", 10*time.Second), "longest wait for the next bytes of a request body; slower clients are cut off (FLOTILLA_BODY_READ_TIMEOUT)")
	f.IntVar(&cfg.EventStreamsPerToken, "event-streams-per-token", int(e.Int64("FLOTILLA_EVENT_STREAMS_PER_TOKEN", 10)), "live event streams one token may hold (FLOTILLA_EVENT_STREAMS_PER_TOKEN)")
	f.IntVar(&cfg.EventStreams, "event-streams", int(e.Int64("FLOTILLA_EVENT_STREAMS", 5000)), "live event streams the server holds in all (FLOTILLA_EVENT_STREAMS)")
	f.IntVar(&cfg.DDIRate, "ddi-rate", int(e.Int64("FLOTILLA_DDI_RATE", 30)), "DDI requests a device may make per second; more are answered 429 (-1: no limit) (FLOTILLA_DDI_RATE)")
	f.IntVar(&cfg.DDIBurst, "ddi-burst", int(e.Int64("FLOTILLA_DDI_BURST", 300)), "DDI requests a device may make at once above --ddi-rate (FLOTILLA_DDI_BURST)")
	f.IntVar(&cfg.AuthFailureRate, "auth-failure-rate", int(e.Int64("FLOTILLA_AUTH_FAILURE_RATE", 5)), "failed authentications a client address may make per second; more are answered 429 (-1: no limit) (FLOTILLA_AUTH_FAILURE_RATE)")
	f.IntVar(&cfg.AuthFailureBurst, "auth-failure-burst", int(e.Int64("FLOTILLA_AUTH_FAILURE_BURST", 50)), "failed authentications allowed at once above --auth-failure-rate (FLOTILLA_AUTH_FAILURE_BURST)")
	f.IntVar(&cfg.Quotas.StatusEntries, "quota-status-entries", int(e.Int64("FLOTILLA_QUOTA_STATUS_ENTRIES", core.DefaultStatusEntries)), "status entries a device may report per deployment (FLOTILLA_QUOTA_STATUS_ENTRIES)")
	f.IntVar(&cfg.Quotas.MessagesPerStatus, "quota-messages-per-status", int(e.Int64("FLOTILLA_QUOTA_MESSAGES_PER_STATUS", core.DefaultMessagesPerStatus)), "messages in one status report (FLOTILLA_QUOTA_MESSAGES_PER_STATUS)")
	f.IntVar(&cfg.Quotas.MessageBytes, "quota-message-bytes", int(e.Int64("FLOTILLA_QUOTA_MESSAGE_BYTES", core.DefaultMessageBytes)), "bytes in one status message (FLOTILLA_QUOTA_MESSAGE_BYTES)")
	f.IntVar(&cfg.Quotas.RegistrationsPerMinute, "quota-registrations-per-minute", int(e.Int64("FLOTILLA_QUOTA_REGISTRATIONS_PER_MINUTE", core.DefaultRegistrationsPerMinute)), "devices that may register themselves per tenant and minute (FLOTILLA_QUOTA_REGISTRATIONS_PER_MINUTE)")
	f.IntVar(&cfg.Quotas.DevicesPerTenant, "quota-devices-per-tenant", int(e.Int64("FLOTILLA_QUOTA_DEVICES_PER_TENANT", core.DefaultDevicesPerTenant)), "devices a tenant may have (FLOTILLA_QUOTA_DEVICES_PER_TENANT)")
	f.IntVar(&cfg.Quotas.ArtifactsPerTenant, "quota-artifacts-per-tenant", int(e.Int64("FLOTILLA_QUOTA_ARTIFACTS_PER_TENANT", core.DefaultArtifactsPerTenant)), "artifacts a tenant may have (FLOTILLA_QUOTA_ARTIFACTS_PER_TENANT)")
	f.DurationVar(&cfg.TUFTimestampExpiry, "tuf-timestamp-expiry", e.Duration("FLOTILLA_TUF_TIMESTAMP_EXPIRY", 24*time.Hour), "how long each signed TUF timestamp is valid; re-signed at half of that; devices refuse older ones (FLOTILLA_TUF_TIMESTAMP_EXPIRY)")
	f.StringSliceVar(&amqpURLs, "amqp-url", splitList(e.Str("FLOTILLA_AMQP_URL", "")), "serve hawkBit's DMF API over this RabbitMQ: amqp://USER:PASSWORD@HOST:5672/VHOST for every tenant, or TENANT=amqp://... for one tenant's own virtual host; repeatable (FLOTILLA_AMQP_URL, comma-separated)")
	f.StringVar(&memoryLimit, "memory-limit", e.Str("FLOTILLA_MEMORY_LIMIT", server.DefaultMemoryLimit), "soft limit of the Go heap, e.g. 768MiB or 4GiB, or off; GOMEMLIMIT wins when set (FLOTILLA_MEMORY_LIMIT)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the server process to this file, until it stops (for performance work)")
	f.IntVar(&demoDevices, "demo", 0, "also run this many simulated devices and upload sample artifacts (see flotilla demo)")
	cfg.AdminToken = e("FLOTILLA_ADMIN_TOKEN")
	cfg.GatewayToken = e("FLOTILLA_GATEWAY_TOKEN")
	cfg.SecretKey = e("FLOTILLA_SECRET_KEY")
	logs.Register(cmd, e)
	return cmd
}

// splitList reads a comma-separated environment value.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
