// Package demo runs a server with a simulated fleet in one process: the
// one command a newcomer runs to see Flotilla roll out an update. It uses
// only public surfaces — the management API to upload the sample artifacts,
// DDI for the devices — so what it shows is what a real fleet gets.
package demo

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/sim"
)

// Config is the server's configuration plus the fleet's.
type Config struct {
	Server  server.Config
	Devices int
	// Poll is the simulated devices' polling interval (default 3s, so a
	// rollout finishes in well under a minute).
	Poll     time.Duration
	FailRate float64
	// DMFDevices are simulated things behind a DMF gateway, when
	// Server.DMF names a broker (default: a quarter of Devices).
	DMFDevices int
	// TempDir reports that Server.DataDir was made for this run and is
	// removed at the end.
	TempDir bool
}

// Artifacts are the sample releases uploaded at the start.
var Artifacts = []struct{ Name, Version string }{{"demo-firmware", "1.1.0"}, {"demo-firmware", "2.0.0"}}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) error {
	if cfg.Devices < 0 {
		return errors.New("demo: --devices must not be negative")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 3 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sc := cfg.Server
	if cfg.TempDir {
		defer os.RemoveAll(sc.DataDir)
	}
	token, err := adminToken(sc)
	if err != nil {
		return err
	}
	sc.AdminToken = token
	if sc.GatewayToken == "" {
		sc.GatewayToken = core.NewSecret("flt_gw_")
	}
	if sc.PollInterval == 0 {
		sc.PollInterval = cfg.Poll
	}
	srv, err := server.New(ctx, sc, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := server.Listen(srv.Config.Listen)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, ln) }()

	for _, a := range Artifacts {
		if err := upload(ctx, base, token, a.Name, a.Version); err != nil {
			return fmt.Errorf("demo: upload %s %s: %w", a.Name, a.Version, err)
		}
	}
	fleetDone := make(chan error, 1)
	if cfg.Devices > 0 {
		fleet, err := sim.New(sim.Config{Server: base, GatewayToken: sc.GatewayToken, Devices: cfg.Devices, Prefix: "demo-", Poll: cfg.Poll,
			FailRate: cfg.FailRate, InstallTime: 500 * time.Millisecond, Seed: uint64(time.Now().UnixNano()), Log: log,
			Labels: []sim.LabelSpread{
				{Key: "region", Values: []string{"eu", "us"}, Weights: []int{60, 40}},
				{Key: "fleet", Values: []string{"kiosk"}, Weights: []int{1}},
			}})
		if err != nil {
			return err
		}
		go func() { fleetDone <- fleet.Run(serveCtx) }()
	} else {
		fleetDone <- nil
	}
	dmfDone := make(chan error, 1)
	if len(sc.DMF) > 0 && cfg.DMFDevices == 0 {
		cfg.DMFDevices = max(1, cfg.Devices/4)
	}
	if len(sc.DMF) > 0 && cfg.DMFDevices > 0 {
		link := sc.DMF[0]
		exchange := link.Exchange
		if exchange == "" {
			exchange = "dmf.exchange"
		}
		things, err := sim.New(sim.Config{Server: base, DMF: link.URL, DMFExchange: exchange, Tenant: cmp.Or(link.Tenant, "default"), Devices: cfg.DMFDevices, Prefix: "demo-dmf-",
			FailRate: cfg.FailRate, InstallTime: 500 * time.Millisecond, Seed: uint64(time.Now().UnixNano()) + 1, Log: log,
			Labels: []sim.LabelSpread{{Key: "region", Values: []string{"eu", "us"}, Weights: []int{60, 40}}, {Key: "fleet", Values: []string{"kiosk"}, Weights: []int{1}}}})
		if err != nil {
			return err
		}
		go func() { dmfDone <- things.Run(serveCtx) }()
	} else {
		cfg.DMFDevices = 0
		dmfDone <- nil
	}

	fmt.Fprintf(stdout, "Flotilla demo\n")
	fmt.Fprintf(stdout, "  data dir      %s%s\n", sc.DataDir, map[bool]string{true: " (removed on exit)"}[cfg.TempDir])
	fmt.Fprintf(stdout, "  fleet         %d simulated devices (demo-*, labels fleet=kiosk, region=eu|us), polling every %s\n", cfg.Devices, cfg.Poll)
	if cfg.DMFDevices > 0 {
		fmt.Fprintf(stdout, "                and %d DMF devices (demo-dmf-*, same labels) behind a gateway on %s\n", cfg.DMFDevices, redact(sc.DMF[0].URL))
	}
	fmt.Fprintf(stdout, "  artifacts     demo-firmware 1.1.0 and 2.0.0\n")
	fmt.Fprintf(stdout, "  admin token   %s\n", token)
	fmt.Fprintf(stdout, "  gateway token %s\n", sc.GatewayToken)
	threshold := ""
	fmt.Fprintf(stdout, "\nA rollout goes wave by wave: the next wave starts once the policy's success_threshold\n"+
		"(default 100%%: every device of the wave) succeeded, else the rollout pauses.\n")
	if cfg.FailRate > 0 {
		pct := max(0, int(100*(1-2*cfg.FailRate)))
		threshold = fmt.Sprintf(`,"policy":{"success_threshold":%d}`, pct)
		fmt.Fprintf(stdout, "With --fail-rate %g the command below asks for %d%%; change \"success_threshold\" to taste.\n", cfg.FailRate, pct)
	}
	fmt.Fprintf(stdout, "\nOpen %s/ and log in with the admin token, then start a rollout from the UI, or:\n\n", base)
	fmt.Fprintf(stdout, "  curl -H 'Authorization: Bearer %s' -d '{\"name\":\"demo\",\"artifact\":{\"name\":\"demo-firmware\",\"version\":\"2.0.0\"},\"selector\":\"fleet=kiosk\",\"waves\":3,\"start\":true%s}' %s/api/v1/rollouts\n\n", token, threshold, base)
	fmt.Fprintf(stdout, "Rollouts' progress is printed below. Ctrl-C stops the demo.\n")
	// Last, so that whoever waits for this line has seen everything above.
	fmt.Fprintf(stdout, "  listening on  %s\n", base)
	go watch(serveCtx, srv.Hub, base, token, stdout)

	err = <-served
	stopServe()
	<-fleetDone
	<-dmfDone
	return err
}

// adminToken is FLOTILLA_ADMIN_TOKEN, else the one a previous run saved in
// the data directory, else a new one saved there.
func adminToken(sc server.Config) (string, error) {
	if sc.AdminToken != "" {
		return sc.AdminToken, nil
	}
	file := filepath.Join(sc.DataDir, "admin-token")
	if b, err := os.ReadFile(file); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	tok := core.NewSecret("flt_")
	if err := os.MkdirAll(sc.DataDir, 0o750); err != nil {
		return "", err
	}
	return tok, os.WriteFile(file, []byte(tok+"\n"), 0o600)
}

// upload puts a sample artifact through the management API, once.
func upload(ctx context.Context, base, token, name, version string) error {
	body := make([]byte, 512<<10)
	r := rand.NewChaCha8([32]byte{byte(len(version)), version[0]})
	r.Read(body)
	copy(body, fmt.Sprintf("%s %s\n", name, version))
	req, err := http.NewRequestWithContext(ctx, "PUT", base+"/api/v1/artifacts/"+name+"/"+version+"?filename="+name+"-"+version+".bin", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusConflict {
		return nil
	}
	return fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

// redact hides a URL's password.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}
