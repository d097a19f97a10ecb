package core

import (
	"context"
	"sync"

	"github.com/flotilla-ota/flotilla"
)

// releaseCache keeps what a device is told about a release — its type,
// name, version, and modules with their files — for DeploymentBase and
// DMF's download messages, which every device of a rollout gets. None of that changes while the
// release exists: an artifact's update reaches only its labels and
// description, a module's files are fixed once a release includes it, and
// ids are never reused. A release cannot be deleted while an active
// deployment uses it, and both tell only active ones, so an entry is
// never served for a release that is gone; deleting one drops its entry
// anyway.
type releaseCache struct {
	mu sync.Mutex
	m  map[releaseKey]flotilla.Artifact
}

type releaseKey struct {
	tenant string
	id     int64
}

// maxCachedReleases bounds the cache; a tenant rolls out a few releases at
// a time, so starting over when it is full costs a few reads.
const maxCachedReleases = 256

// DeployedRelease returns a release with its modules for a device's active
// deployment. Labels and Description are left out: they may change, and
// no device is told them. The value is shared: callers must not modify it.
func (c *Core) DeployedRelease(ctx context.Context, tenant string, id int64) (flotilla.Artifact, error) {
	rc, k := &c.releases, releaseKey{tenant, id}
	rc.mu.Lock()
	a, ok := rc.m[k]
	rc.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := c.Store.GetArtifactByID(ctx, tenant, id)
	if err != nil {
		return a, err
	}
	if a, err = c.withModules(ctx, a); err != nil {
		return a, err
	}
	a.Labels, a.Description = nil, ""
	rc.mu.Lock()
	if rc.m == nil || len(rc.m) >= maxCachedReleases {
		rc.m = map[releaseKey]flotilla.Artifact{}
	}
	rc.m[k] = a
	rc.mu.Unlock()
	return a, nil
}

// forgetRelease drops a deleted release's entry.
func (c *Core) forgetRelease(tenant string, id int64) {
	rc := &c.releases
	rc.mu.Lock()
	delete(rc.m, releaseKey{tenant, id})
	rc.mu.Unlock()
}
