package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/dmf/dmfclient"
)

// runDMF runs the fleet as things behind one DMF gateway: each registers
// with THING_CREATED (its labels as label.* attributes) and answers what
// the server sends over the broker; artifacts still come over HTTP.
func (f *Fleet) runDMF(ctx context.Context) error {
	reply := fmt.Sprintf("flotilla-sim.%s%x", f.cfg.Prefix, rand.Uint32())
	gw, err := dmfclient.Dial(f.cfg.DMF, f.cfg.DMFExchange, reply)
	if err != nil {
		return fmt.Errorf("sim: DMF broker: %w", err)
	}
	defer gw.Delete()
	byID := map[string]*device{}
	inbox := map[string]chan dmfclient.Message{}
	for _, d := range f.devices {
		byID[d.id] = d
		inbox[d.id] = make(chan dmfclient.Message, 16)
	}
	for _, d := range f.devices {
		attrs := map[string]string{"version": d.version, "simulated": "dmf"}
		for k, v := range d.labels {
			attrs["label."+k] = v
		}
		if err := gw.Created(ctx, f.cfg.Tenant, d.id, "", attrs); err != nil {
			return fmt.Errorf("sim: register %s over DMF: %w", d.id, err)
		}
		f.t.registered.Add(1)
		go d.runThing(ctx, gw, inbox[d.id])
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-gw.Messages():
			if !ok {
				return errors.New("sim: the DMF broker connection closed")
			}
			f.t.polls.Add(1) // a message is the DMF device's poll
			if ch, ok := inbox[m.Thing]; ok && !byID[m.Thing].fate.offline {
				ch <- m
			}
		}
	}
}

// runThing answers one thing's messages in order.
func (d *device) runThing(ctx context.Context, gw *dmfclient.Gateway, in <-chan dmfclient.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-in:
			if err := d.answer(ctx, gw, m); err != nil && ctx.Err() == nil {
				d.f.t.pollErrors.Add(1)
				d.f.log.Warn("simulated DMF device", "device", d.id, "err", err)
			}
		}
	}
}

func (d *device) answer(ctx context.Context, gw *dmfclient.Gateway, m dmfclient.Message) error {
	switch m.Topic {
	case dmf.TopicMultiAction:
		var elems []struct {
			Topic  string          `json:"topic"`
			Action json.RawMessage `json:"action"`
			Weight int             `json:"weight"`
		}
		if err := json.Unmarshal(m.Body, &elems); err != nil {
			return err
		}
		slices.SortStableFunc(elems, func(a, b struct {
			Topic  string          `json:"topic"`
			Action json.RawMessage `json:"action"`
			Weight int             `json:"weight"`
		}) int {
			return b.Weight - a.Weight
		})
		for _, e := range elems {
			if err := d.act(ctx, gw, m.Tenant, e.Topic, e.Action); err != nil {
				return err
			}
		}
		return nil
	case dmf.TopicDownloadAndInstall, dmf.TopicDownload, dmf.TopicDownloadAndSkip, dmf.TopicCancelDownload:
		return d.act(ctx, gw, m.Tenant, m.Topic, m.Body)
	}
	return nil
}

// act carries out one action as a real device would.
func (d *device) act(ctx context.Context, gw *dmfclient.Gateway, tenant, topic string, body []byte) error {
	status := func(id int64, s string, msg ...string) error { return gw.Status(ctx, tenant, d.id, id, s, msg...) }
	if topic == dmf.TopicCancelDownload {
		var a dmf.ActionID
		if err := json.Unmarshal(body, &a); err != nil {
			return err
		}
		if d.fate.rejectCancel {
			d.f.t.rejected.Add(1)
			return status(a.ActionID, dmf.StatusCancelRejected, "cancel rejected (simulated)")
		}
		d.f.t.canceled.Add(1)
		d.mu.Lock()
		d.done[fmt.Sprint(a.ActionID)] = true
		d.mu.Unlock()
		return status(a.ActionID, dmf.StatusCanceled, "canceled")
	}
	var req dmf.DownloadRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return err
	}
	key := fmt.Sprint(req.ActionID)
	d.mu.Lock()
	done, have := d.done[key], d.downloaded[key]
	d.mu.Unlock()
	if done {
		return nil
	}
	d.f.t.inFlight.Add(1)
	defer d.f.t.inFlight.Add(-1)
	if !have {
		if err := status(req.ActionID, dmf.StatusDownload, "downloading"); err != nil {
			return err
		}
		for _, sm := range req.SoftwareModules {
			for _, a := range sm.Artifacts {
				if err := d.fetch(ctx, a.URLs["HTTP"], "TargetToken "+req.TargetSecurityToken, a.Filename, a.Hashes["sha256"], a.Size); err != nil {
					d.finish(key)
					d.f.t.failed.Add(1)
					return status(req.ActionID, dmf.StatusError, "download failed: "+err.Error())
				}
			}
		}
		d.mu.Lock()
		d.downloaded[key] = true
		d.mu.Unlock()
	}
	if topic != dmf.TopicDownloadAndInstall {
		// Download only, or the window is closed: wait to be told again.
		if topic == dmf.TopicDownload {
			d.finish(key)
			d.f.t.succeeded.Add(1)
		}
		return status(req.ActionID, dmf.StatusDownloaded, "downloaded")
	}
	if err := status(req.ActionID, dmf.StatusRunning, "installing"); err != nil {
		return err
	}
	if !d.sleep(ctx, d.f.cfg.InstallTime) {
		return ctx.Err()
	}
	d.finish(key)
	switch {
	case d.fate.fail:
		d.f.t.failed.Add(1)
		return status(req.ActionID, dmf.StatusError, "install failed (simulated)")
	case d.fate.unhealthy:
		d.f.t.failed.Add(1)
		d.f.t.unhealthy.Add(1)
		return status(req.ActionID, dmf.StatusError, "health: failed: simulated; rolled back")
	}
	version := ""
	for _, sm := range req.SoftwareModules {
		version = sm.ModuleVersion
	}
	d.mu.Lock()
	d.version = version
	d.mu.Unlock()
	d.f.t.succeeded.Add(1)
	return status(req.ActionID, dmf.StatusFinished, "installed "+strings.TrimSpace(version))
}
