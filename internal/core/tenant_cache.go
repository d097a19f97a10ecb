package core

import (
	"context"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// tenantCache keeps tenants' settings for the poll path, which reads them
// for every answer it computes. Setting changes flush it (here and, through
// the ForgetAuth hook, on every replica); the age bound covers a missed
// notification.
type tenantCache struct {
	mu sync.Mutex
	m  map[string]cachedTenant
}

type cachedTenant struct {
	t  flotilla.Tenant
	at time.Time
}

const tenantCacheAge = 5 * time.Second

func (tc *tenantCache) flush() {
	tc.mu.Lock()
	tc.m = nil
	tc.mu.Unlock()
}

// cachedTenant returns the tenant, from the cache when fresh.
func (c *Core) cachedTenant(ctx context.Context, name string) (flotilla.Tenant, error) {
	tc := &c.tenants
	tc.mu.Lock()
	e, ok := tc.m[name]
	tc.mu.Unlock()
	if ok && time.Since(e.at) < tenantCacheAge {
		return e.t, nil
	}
	t, err := c.Store.GetTenant(ctx, name)
	if err != nil {
		return t, err
	}
	tc.mu.Lock()
	if tc.m == nil {
		tc.m = map[string]cachedTenant{}
	}
	tc.m[name] = cachedTenant{t: t, at: time.Now()}
	tc.mu.Unlock()
	return t, nil
}
