// Package pushd delivers updates to devices that listen for them (push
// delivery): a bounded pool of workers per replica claims push
// deployments, records each update id before the node is contacted, has
// the node accept the update, streams the bytes (resuming where the node
// stopped), and follows the node's own status to the end.
//
// The node is the source of truth. After a server restart a claimed
// deployment is resumed by asking the node: continue sending, wait, or
// record the result — a node never receives the same deployment twice.
//
// The pool is a transport: it writes no deployment state itself. What a
// node says is reported to the core as DDI-style feedback, so push and
// pull deployments follow the same transitions (flotilla.ApplyFeedback).
package pushd

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/push"
)

// Config tunes the pool.
type Config struct {
	Owner   string
	Workers int           // concurrent nodes (default 16)
	Lease   time.Duration // claim lifetime without renewal (default 15s)
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

// Store is what the pool reads. Every write goes through the core.
type Store interface {
	GetDevice(ctx context.Context, tenant, id string) (flotilla.Device, error)
	GetArtifact(ctx context.Context, tenant, name, version string) (flotilla.Artifact, error)
	GetArtifactByID(ctx context.Context, tenant string, id int64) (flotilla.Artifact, error)
	GetDeployment(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error)
	DeploymentByUpdateID(ctx context.Context, tenant, deviceID, updateID string) (flotilla.Deployment, error)
	ClaimPushDeployments(ctx context.Context, owner string, now, until time.Time, limit int, exclude []int64, newID func() string) ([]flotilla.Deployment, error)
	RenewPushClaims(ctx context.Context, owner string, ids []int64, until time.Time) error
	ReleasePushClaim(ctx context.Context, id int64, owner string) error
}

// Pool is one replica's set of push workers.
type Pool struct {
	core *core.Core
	st   Store
	log  *slog.Logger
	cfg  Config
	http *http.Client

	mu     sync.Mutex
	active map[int64]bool
	wake   chan struct{}
}

// New returns a pool; Run starts it.
func New(c *core.Core, st Store, cfg Config) *Pool {
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
	// Up to one connection per worker stays open per host: nodes behind
	// one gateway address (a SPORE facade, the simulator) share a host, and
	// with fewer every question to a node would dial anew.
	tr := &http.Transport{MaxIdleConns: cfg.Workers, MaxIdleConnsPerHost: cfg.Workers, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	return &Pool{core: c, st: st, log: c.Log.With("push", cfg.Owner), cfg: cfg, active: map[int64]bool{}, wake: make(chan struct{}, 1),
		http: &http.Client{Transport: tr}}
}

// DeploymentChanged is the pool's reaction to a deployment change: a new
// pending deployment may be a push delivery to claim.
func (p *Pool) DeploymentChanged(d flotilla.Deployment) {
	if d.State == flotilla.StatePending {
		p.Wake()
	}
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
			// While deliveries run, the slots that free up within a few
			// milliseconds are filled by one claim: a claim is a write, and
			// the writer is what a busy pool waits on.
			p.mu.Lock()
			busy := len(p.active) > 0
			p.mu.Unlock()
			if busy {
				sleep(ctx, claimGather)
			}
		}
	}
}

// claimGather is how long a busy pool gathers free slots before claiming.
const claimGather = 10 * time.Millisecond

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
	// Leases are wall-clock time shared by replicas, not policy time.
	now := time.Now()
	// Ids minted by this claim are unknown to every node.
	minted := map[string]bool{}
	newID := func() string {
		id := NewUpdateID()
		minted[id] = true
		return id
	}
	list, err := p.st.ClaimPushDeployments(ctx, p.cfg.Owner, now, now.Add(p.cfg.Lease), free, exclude, newID)
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
		go func(d flotilla.Deployment, fresh bool) {
			defer wg.Done()
			end := p.deliver(ctx, d, fresh)
			// Claims take open deployments only: one that ended needs no
			// release (a transaction per node, on the pool's critical path).
			if ctx.Err() == nil && !end.State.Terminal() {
				p.st.ReleasePushClaim(context.WithoutCancel(ctx), d.ID, p.cfg.Owner)
			}
			p.mu.Lock()
			delete(p.active, d.ID)
			p.mu.Unlock()
			p.Wake()
		}(d, minted[d.UpdateID])
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

// node returns a client for a device's address that authenticates with
// that node's own token, and only there: a request captured on one node is
// no use against any other.
func (p *Pool) node(d flotilla.Device) (*push.Client, error) {
	if d.Address == "" {
		return nil, flotilla.Errorf(flotilla.EInvalid, "device %q has no push address; set one with PATCH /api/v1/devices/%s {\"address\": \"http://host:port\"}", d.ID, d.ID)
	}
	tok, err := p.core.NodeToken(d)
	if err != nil {
		p.log.Error("node token", "device", d.ID, "err", err)
		return nil, flotilla.Errorf(flotilla.EConflict, "the node token of device %q cannot be read; rotate it with POST /api/v1/devices/%s/node-token", d.ID, d.ID)
	}
	return &push.Client{Base: d.Address, Token: tok, HTTP: p.http}, nil
}

// NodeIP is the host part of a device's address, for SPORE-shaped events.
func NodeIP(address, fallback string) string {
	if u, err := url.Parse(address); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return fallback
}

// pushArtifact is how a node is told what it installs.
func pushArtifact(a flotilla.Artifact) push.Artifact {
	return push.Artifact{Name: a.Name, Version: a.Version, Size: a.Size, SHA256: a.SHA256}
}

// startRequest is what a node is asked to do for update id: with a
// presigned URL to fetch from when the blob store gives one.
func (p *Pool) startRequest(ctx context.Context, id string, a flotilla.Artifact) push.StartRequest {
	r := push.StartRequest{ID: id, Artifact: pushArtifact(a)}
	if rel := p.core.DeviceRelease(ctx, a.Tenant, a); rel.Target != "" {
		r.Artifact.Size, r.Artifact.SHA256, r.Target = rel.Size, rel.SHA256, rel.Target
		r.MetadataToken = p.core.RepositoryCapability(a.Tenant, time.Hour)
	}
	if p.cfg.Presign != nil {
		if u, err := p.cfg.Presign(ctx, a); err == nil {
			r.URL = u
		} else {
			p.log.Warn("presign for push failed; the server sends the bytes", "update", id, "err", err)
		}
	}
	return r
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
