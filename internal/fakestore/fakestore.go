// Package fakestore is an in-memory stand-in for the store in unit tests of
// the core, the scheduler and push delivery, so that their rules are
// tested without a database. It implements the device, artifact,
// deployment and rollout-plan methods those packages use; any other
// store.Store method panics (the embedded interface is nil), which tells a
// test author at once that the code under test reached further than
// expected. The real stores are tested by the storetest conformance suite.
package fakestore

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/rollout"
)

// Store is the fake. The zero value is not usable; call New.
type Store struct {
	store.Store // nil: methods not implemented here panic

	mu          sync.Mutex
	devices     map[string]flotilla.Device // tenant/id
	artifacts   []flotilla.Artifact
	deployments map[int64]*flotilla.Deployment
	nextID      int64
	attrs       map[string]bool

	// Snapshots holds the rollouts the scheduler sees, by id; Applied
	// records every plan applied to them, in order.
	Snapshots map[string]*rollout.Snapshot
	Applied   []Applied
	// Conflicts makes the next ApplyRolloutPlan calls fail with EConflict
	// (another writer got there first), decremented per call.
	Conflicts int
	// Released lists rollouts whose lease was given up.
	Released []string
	// SnapshotReads records what each RolloutSnapshot asked for.
	SnapshotReads []store.SnapshotReads
}

// Applied is one ApplyRolloutPlan call.
type Applied struct {
	ID      string
	Owner   string
	Version int64
	Actions []rollout.Action
}

var _ store.Store = (*Store)(nil)

// New returns an empty fake.
func New() *Store {
	return &Store{devices: map[string]flotilla.Device{}, deployments: map[int64]*flotilla.Deployment{}, attrs: map[string]bool{},
		Snapshots: map[string]*rollout.Snapshot{}}
}

func key(tenant, id string) string { return tenant + "/" + id }

// AddDevice stores a device.
func (s *Store) AddDevice(d flotilla.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[key(d.Tenant, d.ID)] = d
}

// AddArtifact stores an artifact and sets its ID.
func (s *Store) AddArtifact(a *flotilla.Artifact) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.ID = int64(len(s.artifacts) + 1)
	s.artifacts = append(s.artifacts, *a)
}

// Ping implements store.Store.
func (s *Store) Ping(context.Context) error { return nil }

// GetDevice implements store.Devices.
func (s *Store) GetDevice(_ context.Context, tenant, id string) (flotilla.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[key(tenant, id)]
	if !ok {
		return d, flotilla.Errorf(flotilla.ENotFound, "device %q not found", id)
	}
	return d, nil
}

// DeviceTokenHash implements store.Devices.
func (s *Store) DeviceTokenHash(ctx context.Context, tenant, id string) (string, error) {
	d, err := s.GetDevice(ctx, tenant, id)
	return d.TokenHash, err
}

// UpdateDevice implements store.Devices (labels, attributes, address and
// version).
func (s *Store) UpdateDevice(_ context.Context, tenant, id string, p flotilla.DevicePatch, now time.Time) (flotilla.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[key(tenant, id)]
	if !ok {
		return d, flotilla.Errorf(flotilla.ENotFound, "device %q not found", id)
	}
	p.Apply(&d)
	if p.AttributesRequested != nil {
		s.attrs[key(tenant, id)] = *p.AttributesRequested
	}
	d.UpdatedAt = now
	s.devices[key(tenant, id)] = d
	return d, nil
}

// EditDevice implements store.Devices.
func (s *Store) EditDevice(ctx context.Context, tenant, id string, now time.Time, edit func(flotilla.Device, bool) (*flotilla.DevicePatch, error)) (before, after flotilla.Device, err error) {
	s.mu.Lock()
	d, ok := s.devices[key(tenant, id)]
	requested := s.attrs[key(tenant, id)]
	s.mu.Unlock()
	if !ok {
		return d, d, flotilla.Errorf(flotilla.ENotFound, "device %q not found", id)
	}
	p, err := edit(d, requested)
	if err != nil || p == nil {
		return d, d, err
	}
	after, err = s.UpdateDevice(ctx, tenant, id, *p, now)
	return d, after, err
}

// GetArtifact implements store.Artifacts.
func (s *Store) GetArtifact(_ context.Context, tenant, name, version string) (flotilla.Artifact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.artifacts {
		if a.Tenant == tenant && a.Name == name && a.Version == version {
			return a, nil
		}
	}
	return flotilla.Artifact{}, flotilla.Errorf(flotilla.ENotFound, "artifact %s %s not found", name, version)
}

// GetArtifactByID implements store.Artifacts.
func (s *Store) GetArtifactByID(_ context.Context, tenant string, id int64) (flotilla.Artifact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.artifacts {
		if a.Tenant == tenant && a.ID == id {
			return a, nil
		}
	}
	return flotilla.Artifact{}, flotilla.Errorf(flotilla.ENotFound, "artifact %d not found", id)
}

// ReleaseModules implements store.Modules for single-file artifacts: one
// module, with the artifact's id, holding its file.
func (s *Store) ReleaseModules(ctx context.Context, tenant string, id int64) ([]flotilla.Module, error) {
	a, err := s.GetArtifactByID(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return []flotilla.Module{{ID: a.ID, Tenant: a.Tenant, Name: a.Name, Version: a.Version, Type: flotilla.DefaultModuleType(a.Type),
		Files: []flotilla.File{{ID: a.ID, ModuleID: a.ID, Filename: a.Filename, Size: a.Size, SHA256: a.SHA256, SHA1: a.SHA1, MD5: a.MD5}}}}, nil
}

// CreateDeployment implements store.Deployments, superseding the device's
// open deployments as flotilla.CancelOutcome says.
func (s *Store) CreateDeployment(_ context.Context, d *flotilla.Deployment, ev flotilla.DeploymentEvent) ([]store.Superseded, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.devices[key(d.Tenant, d.DeviceID)]; !ok {
		return nil, flotilla.Errorf(flotilla.ENotFound, "device %q not found", d.DeviceID)
	}
	var sup []store.Superseded
	for _, o := range s.sortedLocked() {
		if o.Tenant != d.Tenant || o.DeviceID != d.DeviceID {
			continue
		}
		to := flotilla.CancelOutcome(o.State, o.RetrievedAt != nil)
		if to == "" {
			continue
		}
		if to == flotilla.StateCancelRequested {
			o.PrevState = o.State
		} else {
			o.FinishedAt = &d.CreatedAt
		}
		o.State = to
		o.History = append(o.History, flotilla.DeploymentEvent{At: d.CreatedAt, State: to, Source: flotilla.SourceServer, Details: []string{"superseded by a new assignment"}})
		sup = append(sup, store.Superseded{ID: o.ID, DeviceID: o.DeviceID, RolloutID: o.RolloutID, State: to})
	}
	s.nextID++
	d.ID = s.nextID
	ev.State = d.State
	cp := *d
	cp.History = []flotilla.DeploymentEvent{ev}
	s.deployments[d.ID] = &cp
	return sup, nil
}

func (s *Store) sortedLocked() []*flotilla.Deployment {
	out := make([]*flotilla.Deployment, 0, len(s.deployments))
	for _, d := range s.deployments {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *flotilla.Deployment) int { return int(a.ID - b.ID) })
	return out
}

// GetDeployment implements store.Deployments.
func (s *Store) GetDeployment(_ context.Context, tenant string, id int64) (flotilla.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[id]
	if !ok || d.Tenant != tenant {
		return flotilla.Deployment{}, flotilla.Errorf(flotilla.ENotFound, "deployment %d not found", id)
	}
	cp := *d
	cp.History = slices.Clone(d.History)
	return cp, nil
}

// GetDeploymentBrief implements store.Deployments.
func (s *Store) GetDeploymentBrief(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error) {
	d, err := s.GetDeployment(ctx, tenant, id)
	d.History = nil
	return d, err
}

// DeploymentByUpdateID implements store.Deployments.
func (s *Store) DeploymentByUpdateID(_ context.Context, tenant, deviceID, updateID string) (flotilla.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.deployments {
		if d.Tenant == tenant && d.DeviceID == deviceID && d.UpdateID == updateID {
			return *d, nil
		}
	}
	return flotilla.Deployment{}, flotilla.Errorf(flotilla.ENotFound, "update %q not found", updateID)
}

// UpdateDeployment implements store.Deployments.
func (s *Store) UpdateDeployment(_ context.Context, tenant, deviceID string, id int64, fn func(flotilla.Deployment) (flotilla.Change, error)) (flotilla.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[id]
	if !ok || d.Tenant != tenant || (deviceID != "" && d.DeviceID != deviceID) {
		return flotilla.Deployment{}, flotilla.Errorf(flotilla.ENotFound, "deployment %d not found", id)
	}
	cur := *d
	cur.History = nil
	ch, err := fn(cur)
	if err != nil {
		return flotilla.Deployment{}, err
	}
	n := ch.Deployment
	n.History = append(d.History, ch.Earlier...)
	if ch.Event != nil {
		ev := *ch.Event
		if ev.State == "" {
			ev.State = n.State
		}
		n.History = append(n.History, ev)
	}
	// As the SQL stores: the count is the store's, whatever the change says.
	n.DeviceEvents = d.DeviceEvents
	for _, ev := range n.History[len(d.History):] {
		if ev.Source == flotilla.SourceDevice {
			n.DeviceEvents++
		}
	}
	if ch.Installed {
		dev := s.devices[key(tenant, n.DeviceID)]
		dev.Version = ch.DeviceVersion
		if dev.Version == "" {
			dev.Version = n.ArtifactVersion
		}
		s.devices[key(tenant, n.DeviceID)] = dev
		s.attrs[key(tenant, n.DeviceID)] = true
	}
	s.deployments[id] = &n
	out := n
	out.History = nil
	return out, nil
}

// DeviceActions implements store.Deployments.
func (s *Store) DeviceActions(_ context.Context, tenant, deviceID string) ([]flotilla.Deployment, *flotilla.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var open []flotilla.Deployment
	var installed *flotilla.Deployment
	for _, d := range s.sortedLocked() {
		if d.Tenant != tenant || d.DeviceID != deviceID {
			continue
		}
		if d.State == flotilla.StateScheduled || d.State.Active() {
			open = append(open, *d)
		}
		if d.State == flotilla.StateSucceeded {
			cp := *d
			installed = &cp
		}
	}
	return open, installed, nil
}

// DevicePoll implements store.Deployments.
func (s *Store) DevicePoll(ctx context.Context, tenant, deviceID string) (store.DevicePoll, error) {
	open, installed, _ := s.DeviceActions(ctx, tenant, deviceID)
	attrs, _ := s.AttributesRequested(ctx, tenant, deviceID)
	d, err := s.GetDevice(ctx, tenant, deviceID)
	return store.DevicePoll{Open: open, Installed: installed, AttributesRequested: attrs, Registered: err == nil, TokenHash: d.TokenHash}, nil
}

// AttributesRequested implements store.Deployments.
func (s *Store) AttributesRequested(_ context.Context, tenant, deviceID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attrs[key(tenant, deviceID)], nil
}

// OpenWindowedDeployments implements store.Deployments.
func (s *Store) OpenWindowedDeployments(context.Context) ([]flotilla.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []flotilla.Deployment
	for _, d := range s.sortedLocked() {
		if d.RolloutID == "" && d.Window != nil && (d.State == flotilla.StateScheduled || d.State.Active()) && d.State != flotilla.StateCancelRequested {
			out = append(out, *d)
		}
	}
	return out, nil
}

// ClaimRollouts implements store.Rollouts: every rollout in Snapshots that
// is creating, running or paused.
func (s *Store) ClaimRollouts(context.Context, string, time.Time, time.Time, int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, snap := range s.Snapshots {
		switch snap.Rollout.Status {
		case flotilla.RolloutCreating, flotilla.RolloutRunning, flotilla.RolloutPaused:
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ReleaseRollout implements store.Rollouts.
func (s *Store) ReleaseRollout(_ context.Context, id, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Released = append(s.Released, id)
	return nil
}

// RolloutSnapshot implements store.Rollouts.
func (s *Store) RolloutSnapshot(_ context.Context, id string, _ time.Time, read store.SnapshotReads) (rollout.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.SnapshotReads = append(s.SnapshotReads, read)
	snap, ok := s.Snapshots[id]
	if !ok {
		return rollout.Snapshot{}, flotilla.Errorf(flotilla.ENotFound, "rollout %q not found", id)
	}
	out := *snap
	if !read.NextWave {
		// As the SQL stores: no scheduled devices of waves that have not
		// started.
		through := rollout.ScheduledThrough(out.Waves, false)
		out.Open = nil
		for _, d := range snap.Open {
			if d.State != flotilla.StateScheduled || d.Wave <= through {
				out.Open = append(out.Open, d)
			}
		}
	}
	return out, nil
}

// GetRollout implements store.Rollouts.
func (s *Store) GetRollout(_ context.Context, _, id string) (flotilla.Rollout, []flotilla.Wave, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.Snapshots[id]
	if !ok {
		return flotilla.Rollout{}, nil, flotilla.Errorf(flotilla.ENotFound, "rollout %q not found", id)
	}
	return snap.Rollout, snap.Waves, nil
}

// WriteNextWave implements store.Rollouts: the first unwritten wave
// becomes written.
func (s *Store) WriteNextWave(_ context.Context, id string, _ time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.Snapshots[id]
	if !ok {
		return false, flotilla.Errorf(flotilla.ENotFound, "rollout %q not found", id)
	}
	wrote := false
	for i := range snap.Waves {
		if snap.Waves[i].Unwritten {
			if wrote {
				return true, nil
			}
			snap.Waves[i].Unwritten, wrote = false, true
		}
	}
	return false, nil
}

// ApplyRolloutPlan implements store.Rollouts. It records the plan, bumps
// the version and applies what the scheduler's next look depends on: the
// rollout's status, wave starts and finishes, and released deployments
// leaving the scheduled state.
func (s *Store) ApplyRolloutPlan(_ context.Context, id, owner string, version int64, actions []rollout.Action, now time.Time) ([]store.Touched, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.Snapshots[id]
	if !ok {
		return nil, flotilla.Errorf(flotilla.ENotFound, "rollout %q not found", id)
	}
	if s.Conflicts > 0 {
		s.Conflicts--
		snap.Rollout.Version++
		return nil, flotilla.Errorf(flotilla.EConflict, "rollout %s changed; plan again", id)
	}
	if version != snap.Rollout.Version {
		return nil, flotilla.Errorf(flotilla.EConflict, "rollout %s is at version %d, not %d", id, snap.Rollout.Version, version)
	}
	s.Applied = append(s.Applied, Applied{ID: id, Owner: owner, Version: version, Actions: actions})
	snap.Rollout.Version++
	var touched []store.Touched
	for _, a := range actions {
		switch a.Kind {
		case rollout.ActSetStatus:
			snap.Rollout.Status = a.Status
		case rollout.ActStartWave:
			snap.Waves[*a.Wave].Status, snap.Waves[*a.Wave].StartedAt = flotilla.WaveRunning, &now
		case rollout.ActFinishWave:
			snap.Waves[*a.Wave].Status, snap.Waves[*a.Wave].FinishedAt = a.WaveStatus, &now
		case rollout.ActSuccessGate:
			snap.Waves[*a.Wave].SuccessAt = &now
		case rollout.ActRelease:
			for i := range snap.Open {
				if slices.Contains(a.IDs, snap.Open[i].ID) && snap.Open[i].State == flotilla.StateScheduled {
					w := &snap.Waves[snap.Open[i].Wave]
					w.Counts[flotilla.StateScheduled]--
					w.Counts[flotilla.StatePending]++
					snap.Open[i].State, snap.Open[i].StartedAt = flotilla.StatePending, &now
					d := snap.Open[i]
					touched = append(touched, store.Touched{ID: d.ID, DeviceID: d.DeviceID, Wave: d.Wave, State: flotilla.StatePending,
						Type: snap.Rollout.Type, ForceAt: snap.Rollout.ForceAt, Window: snap.Rollout.Window, Delivery: snap.Rollout.Delivery})
				}
			}
		}
	}
	return touched, nil
}
