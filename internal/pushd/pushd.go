// Package pushd delivers updates to devices that listen for them (push
// delivery): a bounded pool of workers per replica claims push
// deployments, records each update id before the node is contacted, has
// the node accept the update, streams the bytes (resuming where the node
// stopped), and follows the node's own status to the end.
//
// The node is the source of truth. After a server restart a claimed
// deployment is resumed by asking the node: continue sending, wait, or
// record the result — a node never receives the same deployment twice.
package pushd

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/push"
)

// Config tunes the pool.
type Config struct {
	Owner   string
	Workers int           // concurrent nodes (default 16)
	Lease   time.Duration // claim lifetime without renewal (default 15s)
	// NodeToken is sent to nodes as a bearer token, when they require one.
	NodeToken string
	// Unreachable fails a delivery whose node did not answer for this long
	// (default 2m).
	Unreachable time.Duration
	// Poll is the longest wait between status questions while a node
	// works (default 250ms). The first questions after a step come
	// sooner and back off to it: a small update verifies and applies in
	// milliseconds.
	Poll time.Duration
	// Presign, if set, gives a URL the node may fetch the artifact from
	// itself (object storage, presigned); the server sends the bytes only
	// when the node does not or cannot.
	Presign func(ctx context.Context, a flotilla.Artifact) (string, error)
}

// Pool is one replica's set of push workers.
type Pool struct {
	core *core.Core
	st   store.Store
	log  *slog.Logger
	cfg  Config
	http *http.Client

	mu     sync.Mutex
	active map[int64]bool
	wake   chan struct{}
}

// New returns a pool; Run starts it.
func New(c *core.Core, cfg Config) *Pool {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.Unreachable <= 0 {
		cfg.Unreachable = 2 * time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Owner == "" {
		cfg.Owner = core.NewID("push-")
	}
	p := &Pool{core: c, st: c.Store, log: c.Log.With("push", cfg.Owner), cfg: cfg, active: map[int64]bool{}, wake: make(chan struct{}, 1),
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: 30 * time.Second}}}
	c.OnDeploymentChange(func(d flotilla.Deployment) {
		if d.State == flotilla.StatePending {
			p.Wake()
		}
	})
	return p
}

// Wake makes the pool look for work now.
func (p *Pool) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run claims and delivers until ctx ends; deliveries in flight stop and
// resume on whichever replica claims them next.
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		p.claim(ctx, &wg)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.renew(ctx)
		case <-p.wake:
		}
	}
}

func (p *Pool) claim(ctx context.Context, wg *sync.WaitGroup) {
	p.mu.Lock()
	free := p.cfg.Workers - len(p.active)
	exclude := make([]int64, 0, len(p.active))
	for id := range p.active {
		exclude = append(exclude, id)
	}
	p.mu.Unlock()
	if free <= 0 {
		return
	}
	now := time.Now()
	list, err := p.st.ClaimPushDeployments(ctx, p.cfg.Owner, now, now.Add(p.cfg.Lease), free, exclude)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("claim push deployments", "err", err)
		}
		return
	}
	for _, d := range list {
		p.mu.Lock()
		p.active[d.ID] = true
		p.mu.Unlock()
		wg.Add(1)
		go func(d flotilla.Deployment) {
			defer wg.Done()
			p.deliver(ctx, d)
			p.mu.Lock()
			delete(p.active, d.ID)
			p.mu.Unlock()
			if ctx.Err() == nil {
				p.st.ReleasePushClaim(context.WithoutCancel(ctx), d.ID, p.cfg.Owner)
			}
			p.Wake()
		}(d)
	}
}

func (p *Pool) renew(ctx context.Context) {
	p.mu.Lock()
	ids := make([]int64, 0, len(p.active))
	for id := range p.active {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	if len(ids) > 0 {
		if err := p.st.RenewPushClaims(ctx, p.cfg.Owner, ids, time.Now().Add(p.cfg.Lease)); err != nil && ctx.Err() == nil {
			p.log.Warn("renew push claims", "err", err)
		}
	}
}

// NewUpdateID returns a random UUID (version 4).
func NewUpdateID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// node returns a client for a device's address.
func (p *Pool) node(d flotilla.Device) (*push.Client, error) {
	if d.Address == "" {
		return nil, flotilla.Errorf(flotilla.EInvalid, "device %q has no push address; set one with PATCH /api/v1/devices/%s {\"address\": \"http://host:port\"}", d.ID, d.ID)
	}
	return &push.Client{Base: d.Address, Token: p.cfg.NodeToken, HTTP: p.http}, nil
}

// NodeIP is the host part of a device's address, for SPORE-shaped events.
func NodeIP(address, fallback string) string {
	if u, err := url.Parse(address); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return fallback
}

// set moves a deployment and announces it.
func (p *Pool) set(ctx context.Context, d flotilla.Deployment, dev flotilla.Device, state flotilla.DeploymentState, msg string, cnt, of int) (flotilla.Deployment, error) {
	var before flotilla.DeploymentState
	nd, err := p.st.UpdateDeployment(context.WithoutCancel(ctx), d.Tenant, d.DeviceID, d.ID, func(cur flotilla.Deployment) (store.DeploymentChange, error) {
		before = cur.State
		if cur.State.Terminal() {
			return store.DeploymentChange{}, flotilla.Errorf(flotilla.EGone, "deployment %d is already %s", cur.ID, cur.State)
		}
		now := p.core.Now()
		progressOnly := cur.State == state && msg == cur.Message
		cur.State, cur.UpdatedAt, cur.Message = state, now, msg
		if of > 0 {
			cur.ProgressCnt, cur.ProgressOf = cnt, of
		}
		if state.Terminal() {
			cur.FinishedAt = &now
		}
		if progressOnly {
			return store.DeploymentChange{Deployment: cur}, nil
		}
		return store.DeploymentChange{Deployment: cur, Event: &flotilla.DeploymentEvent{At: now, Source: "server", Details: []string{msg}}}, nil
	})
	if err != nil {
		return d, err
	}
	p.core.PushDeploymentChanged(nd, NodeIP(dev.Address, dev.ID), before == nd.State)
	return nd, nil
}

// pushArtifact is how a node is told what it installs.
func pushArtifact(a flotilla.Artifact) push.Artifact {
	return push.Artifact{Name: a.Name, Version: a.Version, Size: a.Size, SHA256: a.SHA256}
}

// startRequest is what a node is asked to do for update id: with a
// presigned URL to fetch from when the blob store gives one.
func (p *Pool) startRequest(ctx context.Context, id string, a flotilla.Artifact) push.StartRequest {
	r := push.StartRequest{ID: id, Artifact: pushArtifact(a)}
	if p.cfg.Presign != nil {
		if u, err := p.cfg.Presign(ctx, a); err == nil {
			r.URL = u
		} else {
			p.log.Warn("presign for push failed; the server sends the bytes", "update", id, "err", err)
		}
	}
	return r
}

// deliver drives one push deployment to its end, or until ctx ends.
func (p *Pool) deliver(ctx context.Context, d flotilla.Deployment) {
	dev, err := p.st.GetDevice(ctx, d.Tenant, d.DeviceID)
	if err != nil {
		p.set(ctx, d, dev, flotilla.StateFailed, "device not found", 0, 0)
		return
	}
	node, err := p.node(dev)
	if err != nil {
		p.set(ctx, d, dev, flotilla.StateFailed, flotilla.ErrorMessage(err), 0, 0)
		return
	}
	a, err := p.st.GetArtifactByID(ctx, d.Tenant, d.ArtifactID)
	if err != nil {
		p.set(ctx, d, dev, flotilla.StateFailed, "artifact no longer exists", 0, 0)
		return
	}
	// The update id is recorded before the node hears of it.
	if d.UpdateID == "" {
		uid := NewUpdateID()
		d, err = p.st.UpdateDeployment(ctx, d.Tenant, d.DeviceID, d.ID, func(cur flotilla.Deployment) (store.DeploymentChange, error) {
			if cur.UpdateID == "" {
				cur.UpdateID = uid
			}
			return store.DeploymentChange{Deployment: cur}, nil
		})
		if err != nil {
			return
		}
	}
	art := pushArtifact(a)
	var lastContact = time.Now()
	// wait backs off from a few milliseconds to cfg.Poll while the node
	// stays in one state, and starts over when it moves on.
	wait, seen := p.cfg.Poll/32, ""
	var reported time.Time // last progress written while the node fetches
	for ctx.Err() == nil {
		if d.State.Terminal() {
			// Canceled on the server meanwhile: make sure the node stops too.
			if st, err := node.Status(ctx); err == nil && st.ID == d.UpdateID && !push.Terminal(st.State) {
				node.Abort(ctx, d.UpdateID)
			}
			return
		}
		if d.State == flotilla.StateCancelRequested {
			p.abort(ctx, d, dev, node)
			return
		}
		st, err := node.Status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if time.Since(lastContact) > p.cfg.Unreachable {
				p.set(ctx, d, dev, flotilla.StateFailed, fmt.Sprintf("node %s unreachable: %v", dev.Address, err), 0, 0)
				return
			}
			sleep(ctx, 2*time.Second)
			d = p.reload(ctx, d)
			continue
		}
		lastContact = time.Now()
		if st.State != seen {
			wait, seen = p.cfg.Poll/32, st.State
		}
		if st.ID != d.UpdateID {
			if d.State == flotilla.StatePending || d.State == flotilla.StateDownloading {
				if !push.Terminal(st.State) {
					// Busy with another update: wait our turn.
					sleep(ctx, p.cfg.Poll*4)
					d = p.reload(ctx, d)
					continue
				}
				if _, err := node.Start(ctx, p.startRequest(ctx, d.UpdateID, a)); err != nil {
					var ne *push.NodeError
					if errors.As(err, &ne) && ne.Status == http.StatusConflict {
						p.set(ctx, d, dev, flotilla.StateFailed, "node refused the update: "+ne.Message, 0, 0)
						return
					}
					sleep(ctx, time.Second)
					continue
				}
				if d, err = p.set(ctx, d, dev, flotilla.StateDownloading, "node accepted the update", 0, int(art.Size)); err != nil {
					return
				}
				continue
			}
			p.set(ctx, d, dev, flotilla.StateFailed, fmt.Sprintf("node no longer knows update %s (it reports %q)", d.UpdateID, st.ID), 0, 0)
			return
		}
		switch st.State {
		case push.StateReceiving:
			if d.State == flotilla.StatePending {
				if d, err = p.set(ctx, d, dev, flotilla.StateDownloading, "node accepted the update", int(st.BytesReceived), int(art.Size)); err != nil {
					return
				}
			}
			if st.Fetching {
				// The node pulls the bytes from object storage itself.
				if st.BytesReceived > 0 && time.Since(reported) >= time.Second {
					if nd, err := p.set(ctx, d, dev, flotilla.StateDownloading, "node is fetching the artifact from object storage", int(st.BytesReceived), int(art.Size)); err == nil {
						d = nd
					}
					reported = time.Now()
				}
				sleep(ctx, wait)
				wait = min(2*wait, p.cfg.Poll)
				d = p.reload(ctx, d)
				continue
			}
			if err := p.send(ctx, d, dev, node, a, st.BytesReceived); err != nil && ctx.Err() == nil {
				p.log.Debug("payload interrupted; resuming", "deployment", d.ID, "err", err)
				sleep(ctx, 500*time.Millisecond)
			}
		case push.StateVerifying, push.StateApplying:
			if d.State != flotilla.StateInstalling {
				if d, err = p.set(ctx, d, dev, flotilla.StateInstalling, "node is "+st.State, int(art.Size), int(art.Size)); err != nil {
					return
				}
			}
			sleep(ctx, wait)
			wait = min(2*wait, p.cfg.Poll)
		case push.StateComplete:
			nd, err := p.set(ctx, d, dev, flotilla.StateSucceeded, "node runs "+st.Version, int(art.Size), int(art.Size))
			if err == nil {
				p.core.RecordDeviceVersion(ctx, nd, st.Version)
			}
			return
		case push.StateFailed:
			p.set(ctx, d, dev, flotilla.StateFailed, "node: "+st.Error, 0, 0)
			return
		case push.StateAborted:
			p.set(ctx, d, dev, flotilla.StateCanceled, "node aborted the update", 0, 0)
			return
		default:
			sleep(ctx, wait)
			wait = min(2*wait, p.cfg.Poll)
		}
		d = p.reload(ctx, d)
	}
}

func (p *Pool) reload(ctx context.Context, d flotilla.Deployment) flotilla.Deployment {
	nd, err := p.st.GetDeployment(ctx, d.Tenant, d.ID)
	if err != nil {
		return d
	}
	return nd
}

func (p *Pool) abort(ctx context.Context, d flotilla.Deployment, dev flotilla.Device, node *push.Client) {
	st, err := node.Abort(ctx, d.UpdateID)
	var ne *push.NodeError
	switch {
	case err == nil && st.State == push.StateAborted:
		p.set(ctx, d, dev, flotilla.StateCanceled, "node aborted the update", 0, 0)
	case errors.As(err, &ne) && ne.Status == http.StatusConflict:
		// Too late (applying, or a different id): the delivery continues.
		p.st.UpdateDeployment(ctx, d.Tenant, d.DeviceID, d.ID, func(cur flotilla.Deployment) (store.DeploymentChange, error) {
			if cur.State != flotilla.StateCancelRequested {
				return store.DeploymentChange{Deployment: cur}, nil
			}
			prev := cur.PrevState
			if prev == "" {
				prev = flotilla.StateDownloading
			}
			cur.State, cur.PrevState = prev, ""
			return store.DeploymentChange{Deployment: cur, Event: &flotilla.DeploymentEvent{At: p.core.Now(), Source: "device", Execution: flotilla.ExecRejected,
				Details: []string{"node refused to abort: " + ne.Message}}}, nil
		})
	default:
		sleep(ctx, time.Second)
	}
}

// send streams the artifact from offset, reporting progress as it goes.
func (p *Pool) send(ctx context.Context, d flotilla.Deployment, dev flotilla.Device, node *push.Client, a flotilla.Artifact, offset int64) error {
	obj, err := p.core.OpenArtifact(ctx, a)
	if err != nil {
		return err
	}
	defer obj.Close()
	if _, err := obj.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	pr := &progress{r: obj, n: offset, every: time.Second, fn: func(n int64) {
		p.set(ctx, d, dev, flotilla.StateDownloading, "node accepted the update", int(n), int(a.Size))
	}}
	_, err = node.SendPayload(ctx, d.UpdateID, pr, offset, a.Size)
	return err
}

type progress struct {
	r     io.Reader
	n     int64
	last  time.Time
	every time.Duration
	fn    func(int64)
}

func (p *progress) Read(b []byte) (int, error) {
	k, err := p.r.Read(b)
	p.n += int64(k)
	if time.Since(p.last) > p.every {
		p.last = time.Now()
		p.fn(p.n)
	}
	return k, err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
