package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
)

// runPreview times rollout previews (POST /api/v1/rollouts/preview, what
// the UI asks while an operator types a selector) over a large fleet of
// 1,000 distinct label sets (100 regions × 10 models): selectors that pick
// 1% and 18% of the fleet, in 5 waves. The baseline is the cheapest
// authenticated request on the same server (GET /api/v1/info); the target
// is 200 ms (p95). A selector matching the whole fleet reads every device
// and is reported on its own line, not as the row's figure.
func runPreview(ctx context.Context, o opts) ([]result, error) {
	n := 1_000_000
	if o.quick {
		n = 200_000
	}
	f, err := startFlotilla(filepath.Join(o.tmp, "preview"), func(*server.Config) {})
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	took, err := createDevicesWith(ctx, f.Srv.Store, n, 0, func(i int) map[string]string {
		return map[string]string{"fleet": "bench", "region": fmt.Sprintf("r%d", i%100), "model": fmt.Sprintf("m%d", i/100%10)}
	})
	if err != nil {
		return nil, err
	}
	o.logf("%d devices with 1,000 label sets registered in %s", n, took.Round(time.Millisecond))

	rounds := 20
	if o.quick {
		rounds = 10
	}
	baseP95, err := infoP95(f, rounds)
	if err != nil {
		return nil, err
	}

	type preview struct {
		Total int `json:"total"`
	}
	measure := func(selector string, want int) (time.Duration, error) {
		var ds []time.Duration
		for range rounds {
			var pv preview
			start := time.Now()
			if err := f.api("POST", "/api/v1/rollouts/preview", map[string]any{"selector": selector, "waves": 5}, &pv); err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(start))
			if pv.Total != want {
				return 0, fmt.Errorf("preview of %q: %d devices, want %d", selector, pv.Total, want)
			}
		}
		return p95(ds), nil
	}
	cases := []struct {
		selector string
		want     int
	}{
		{"region=r7", n / 100},
		{"region in (r1,r2,r3,r4,r5,r6,r7,r8,r9,r10,r11,r12,r13,r14,r15,r16,r17,r18,r19,r20),model!=m3", n / 100 * 20 * 9 / 10},
	}
	var worst time.Duration
	var worstName string
	stopProfile := o.profileWindow()
	for _, c := range cases {
		t, err := measure(c.selector, c.want)
		if err != nil {
			return nil, err
		}
		o.logf("preview %q (%d devices): %s", c.selector, c.want, t.Round(100*time.Microsecond))
		if t > worst {
			worst, worstName = t, fmt.Sprintf("%d%% of the fleet", c.want*100/n)
		}
	}
	stopProfile()
	if t, err := measure("fleet=bench", n); err != nil {
		return nil, err
	} else {
		o.logf("preview of the whole fleet (%d devices, every one read): %s", n, t.Round(100*time.Microsecond))
	}
	return []result{{Name: fmt.Sprintf("Rollout preview, %dk devices, 1,000 label sets (worst selector, p95)", n/1000),
		Figure: fmt.Sprintf("%s (%s)", worst.Round(100*time.Microsecond), worstName), Baseline: baseP95.Round(100*time.Microsecond).String() + " (GET /api/v1/info)",
		Ratio: worst.Seconds() / baseP95.Seconds(), Target: "< 200ms", Pass: worst < 200*time.Millisecond}}, nil
}
