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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
)

// base is the device's DDI root.
func (d *device) base() string { return d.baseURL }

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
	return d.fetch(ctx, url, "GatewayToken "+d.f.cfg.GatewayToken, a.Filename, a.Hashes.SHA256, a.Size)
}

// fetch downloads one file, the server's with auth, and checks its sha256
// and size.
func (d *device) fetch(ctx context.Context, url, auth, filename, sha256sum string, size int64) error {
	a := struct {
		Filename string
		Size     int64
		Hashes   struct{ SHA256 string }
	}{Filename: filename, Size: size}
	a.Hashes.SHA256 = sha256sum
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	if strings.HasPrefix(url, d.f.cfg.Server) {
		req.Header.Set("Authorization", auth)
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
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(io.MultiWriter(h, sink, countWriter{&d.f.t.bytes}), body, *buf)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.Hashes.SHA256 || (a.Size > 0 && n != a.Size) {
		d.f.t.hashMismatch.Add(1)
		return fmt.Errorf("%w: %s: got %s (%d bytes), want %s (%d bytes)", errHashMismatch, a.Filename, got, n, a.Hashes.SHA256, a.Size)
	}
	return nil
}

// copyBuffers hold downloads on their way to the hash: larger than
// io.Copy's 32 KiB, so that a download takes fewer reads.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

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
