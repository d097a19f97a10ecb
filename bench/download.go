package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-ota/flotilla/internal/blob/disk"
)

const downloadClients = 8

// fetchParallel downloads url with n clients at once (each its own
// connection) and returns the aggregate throughput in bytes per second.
func fetchParallel(url string, n int, headers ...string) (float64, error) {
	var total atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
			req, _ := http.NewRequest("GET", url, nil)
			for j := 0; j+1 < len(headers); j += 2 {
				req.Header.Set(headers[j], headers[j+1])
			}
			resp, err := client.Do(req)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				firstErr.CompareAndSwap(nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode))
				return
			}
			k, err := io.Copy(io.Discard, resp.Body)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
			total.Add(k)
		}()
	}
	wg.Wait()
	if v := firstErr.Load(); v != nil {
		return 0, v.(error)
	}
	return float64(total.Load()) / time.Since(start).Seconds(), nil
}

// runDownload: 8 devices download one large artifact at once over DDI;
// the baseline is http.ServeFile of the same blob file.
func runDownload(ctx context.Context, o opts) ([]result, error) {
	size := int64(1 << 30)
	rounds := 3
	if o.quick {
		size, rounds = 256<<20, 2
	}
	f, err := startFlotilla(filepath.Join(o.tmp, "download"), nil)
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	t := time.Now()
	if err := f.upload("big-fw", "1.0.0", io.LimitReader(randomReader(2), size), size); err != nil {
		return nil, err
	}
	o.logf("uploaded %d MiB in %s (streamed, hashed three ways)", size>>20, time.Since(t).Round(time.Millisecond))
	var art struct {
		ID       int64
		Filename string
		SHA256   string
	}
	if err := f.api("GET", "/api/v1/artifacts/big-fw/1.0.0", nil, &art); err != nil {
		return nil, err
	}
	var dev struct{ Token string }
	if err := f.api("POST", "/api/v1/devices", map[string]any{"id": "downloader"}, &dev); err != nil {
		return nil, err
	}
	if err := f.api("POST", "/api/v1/devices/downloader/deployments", map[string]any{"artifact": map[string]string{"name": "big-fw", "version": "1.0.0"}}, nil); err != nil {
		return nil, err
	}
	ddiURL := fmt.Sprintf("%s/default/controller/v1/downloader/softwaremodules/%d/artifacts/%s", f.URL, art.ID, art.Filename)

	path, ok := f.Srv.Blobs.(*disk.Store).Path(art.SHA256)
	if !ok {
		return nil, fmt.Errorf("no blob file for %s", art.SHA256)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })}
	go plain.Serve(ln)
	defer plain.Close()
	plainURL := "http://" + ln.Addr().String() + "/blob"

	var base, flot float64
	for i := 0; i < rounds; i++ {
		b, err := fetchParallel(plainURL, downloadClients)
		if err != nil {
			return nil, err
		}
		fl, err := fetchParallel(ddiURL, downloadClients, "Authorization", "TargetToken "+dev.Token)
		if err != nil {
			return nil, err
		}
		o.logf("round %d: http.ServeFile %.0f MiB/s, flotilla DDI %.0f MiB/s", i+1, b/(1<<20), fl/(1<<20))
		base, flot = max(base, b), max(flot, fl)
	}
	ratio := flot / base
	return []result{{Name: fmt.Sprintf("Artifact download, %d MiB, %d parallel clients", size>>20, downloadClients),
		Figure: fmt.Sprintf("%.0f MiB/s", flot/(1<<20)), Baseline: fmt.Sprintf("%.0f MiB/s (http.ServeFile)", base/(1<<20)),
		Ratio: ratio, Target: "≥ 0.90", Pass: ratio >= 0.9}}, nil
}
