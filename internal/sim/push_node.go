package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/flotilla-ota/flotilla/push"
)

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
	base := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	// Each node is registered first: the server answers with the token it
	// will send that node, which the node then requires.
	for _, d := range f.devices {
		token, err := f.registerNode(ctx, d, base+"/node/"+d.id)
		if err != nil {
			return err
		}
		n, err := push.NewNode(push.NodeConfig{StateDir: filepath.Join(stateRoot, d.id), Version: f.cfg.Version, DeviceID: d.id, Labels: d.labels,
			Token: token, Logger: f.log, MaxRate: map[bool]int64{true: f.cfg.SlowRate}[d.fate.slow],
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
		f.t.registered.Add(1)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	f.log.Info("push nodes listening", "addr", base)
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

// registerNode registers a node with its address (or updates one that
// exists) and returns the token the server will send it.
func (f *Fleet) registerNode(ctx context.Context, d *device, address string) (string, error) {
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
		if err == nil && code < 300 {
			code, body, err = call("POST", "/api/v1/devices/"+d.id+"/node-token", nil)
		}
	}
	if err != nil {
		return "", fmt.Errorf("sim: register node %s: %w", d.id, err)
	}
	if code >= 300 {
		return "", fmt.Errorf("sim: register node %s: %d %s", d.id, code, bytes.TrimSpace(body))
	}
	var out struct {
		NodeToken string `json:"node_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.NodeToken == "" {
		return "", fmt.Errorf("sim: register node %s: the server returned no node token", d.id)
	}
	return out.NodeToken, nil
}
