package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/server"
)

// runDeviceList times pages of the device list — what the UI's devices
// page asks for — over 100k devices of which half are in a rollout: the
// first page, pages deep in the list, each sort order, an id prefix and a
// selector. The baseline is the cheapest authenticated request on the same
// server (GET /api/v1/info); the target is under 200 ms per page (p95).
func runDeviceList(ctx context.Context, o opts) ([]result, error) {
	type backend struct{ name, db string }
	backends := []backend{{"SQLite", ""}}
	if o.postgres != "" {
		backends = append(backends, backend{"PostgreSQL", o.postgres})
	}
	var out []result
	for i, b := range backends {
		db := b.db
		if db != "" {
			var cleanup func()
			var err error
			if db, cleanup, err = freshSchema(ctx, db); err != nil {
				return nil, err
			}
			defer cleanup()
		}
		f, err := startFlotilla(filepath.Join(o.tmp, fmt.Sprintf("devicelist-%d", i)), func(c *server.Config) { c.DatabaseURL = db })
		if err != nil {
			return nil, err
		}
		rs, err := measureDeviceList(ctx, o, f, b.name, 100_000)
		f.Stop()
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func measureDeviceList(ctx context.Context, o opts, f *flot, backend string, n int) ([]result, error) {
	now := time.Now()
	regions := []string{"eu", "us", "apac", "latam"}
	const batch = 10000
	for lo := 0; lo < n; lo += batch {
		var ds []flotilla.Device
		for i := lo; i < min(n, lo+batch); i++ {
			seen := now.Add(-time.Duration(i*7919%n) * time.Second)
			labels := map[string]string{"fleet": "bench", "region": regions[i%len(regions)]}
			if i == n*3/4 {
				labels["canary"] = "yes" // the one device a rare selector finds
			}
			ds = append(ds, flotilla.Device{Tenant: flotilla.DefaultTenant, ID: deviceID(i), Attributes: map[string]string{},
				Labels: labels, Version: fmt.Sprintf("1.%d.0", i%7), LastSeenAt: &seen, CreatedAt: now, UpdatedAt: now})
		}
		if err := f.Srv.Store.CreateDevices(ctx, ds); err != nil {
			return nil, err
		}
	}
	if err := f.upload("bench-fw", "2.0.0", strings.NewReader("x"), 1); err != nil {
		return nil, err
	}
	// Half the fleet has a deployment, so the current-deployment column
	// has something to find.
	if _, err := timeRollout(f, "region in (eu,us)", 5); err != nil {
		return nil, err
	}
	if err := waitWritten(ctx, f, lastRollout); err != nil {
		return nil, err
	}
	o.logf("%s: %d devices, %d in a started rollout", backend, n, n/2)

	type page struct {
		Items []struct {
			ID         string `json:"id"`
			Deployment *struct {
				ID int64 `json:"id"`
			} `json:"deployment"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	get := func(q url.Values) (page, time.Duration, error) {
		var p page
		start := time.Now()
		err := f.api("GET", "/api/v1/devices?"+q.Encode(), nil, &p)
		return p, time.Since(start), err
	}
	rounds := 40
	if o.quick {
		rounds = 20
	}
	// Baseline: the cheapest authenticated request.
	baseP95, err := infoP95(f, rounds)
	if err != nil {
		return nil, err
	}

	cases := []struct {
		name  string
		query url.Values
		deep  int // follow the cursor this many pages first
	}{
		{"first page by id", url.Values{"limit": {"50"}}, 0},
		{"page 400 by id (cursor)", url.Values{"limit": {"50"}}, 400},
		{"by last seen, newest first", url.Values{"limit": {"50"}, "sort": {"-last_seen"}}, 0},
		{"page 400 by last seen (cursor)", url.Values{"limit": {"50"}, "sort": {"-last_seen"}}, 400},
		{"by version", url.Values{"limit": {"50"}, "sort": {"version"}}, 0},
		{"id prefix", url.Values{"limit": {"50"}, "prefix": {"bench-00123"}}, 0},
		{"selector region=apac", url.Values{"limit": {"50"}, "selector": {"region=apac"}}, 0},
		{"selector region=eu, by last seen", url.Values{"limit": {"50"}, "selector": {"region=eu"}, "sort": {"-last_seen"}}, 0},
		{"selector matching 1 device", url.Values{"limit": {"50"}, "selector": {"canary=yes"}}, 0},
	}
	var worst time.Duration
	var worstName string
	var rows []string
	for _, c := range cases {
		q := url.Values{}
		for k, v := range c.query {
			q[k] = v
		}
		for range c.deep {
			p, _, err := get(q)
			if err != nil {
				return nil, err
			}
			if p.NextCursor == "" {
				return nil, fmt.Errorf("%s: the list ended before page %d", c.name, c.deep)
			}
			q.Set("cursor", p.NextCursor)
		}
		var ds []time.Duration
		withDeployment := 0
		for range rounds {
			p, d, err := get(q)
			if err != nil {
				return nil, err
			}
			if len(p.Items) == 0 {
				return nil, fmt.Errorf("%s: an empty page", c.name)
			}
			withDeployment = 0
			for _, it := range p.Items {
				if it.Deployment != nil {
					withDeployment++
				}
			}
			ds = append(ds, d)
		}
		t := p95(ds)
		rows = append(rows, fmt.Sprintf("%s %s (%d/%d with a deployment)", c.name, t.Round(100*time.Microsecond), withDeployment, 50))
		if t > worst {
			worst, worstName = t, c.name
		}
	}
	for _, r := range rows {
		o.logf("%s: %s", backend, r)
	}
	return []result{{Name: fmt.Sprintf("Device list page, 100k devices, %s (worst of %d queries, p95)", backend, len(cases)),
		Figure: fmt.Sprintf("%s (%s)", worst.Round(100*time.Microsecond), worstName), Baseline: baseP95.Round(100*time.Microsecond).String() + " (GET /api/v1/info)",
		Ratio: worst.Seconds() / baseP95.Seconds(), Target: "< 200ms", Pass: worst < 200*time.Millisecond}}, nil
}
