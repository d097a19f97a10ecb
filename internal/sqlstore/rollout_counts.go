package sqlstore

import (
	"cmp"
	"context"
	"maps"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// Counting a rollout's deployments by state reads every one of them: about
// 15 ms at 100k devices and ten times that at 1M. A dashboard showing a
// large rollout every second, or ten operators doing so, would keep a core
// busy for nothing. So GetRollout, the read for display, reuses counts read
// in the last CountsMaxAge for rollouts of CountsCacheFrom devices or more,
// as hawkBit caches its rollout status counts. The rollout and its waves
// (status, times) are always read, a plan applied to the rollout (an
// operator's action, a wave released or ended) reads the counts again, and
// the scheduler's snapshot always counts.
const (
	DefaultCountsMaxAge    = time.Second
	DefaultCountsCacheFrom = 10000
)

type countsCache struct {
	mu sync.Mutex
	m  map[string]cachedCounts
}

type cachedCounts struct {
	at      time.Time
	version int64 // every plan applied, an operator's or the scheduler's, moves it
	status  flotilla.RolloutStatus
	waves   []waveCounts
}

// waveCounts are a wave's counts, and the wave's status and whether it
// was written when they were read: a change of either (a wave released,
// ended or aborted) reads the counts again.
type waveCounts struct {
	counts             map[flotilla.DeploymentState]int
	waiting, unhealthy int
	status             flotilla.WaveStatus
	unwritten          bool
}

// fits reports whether c counts these waves as they are now.
func (c cachedCounts) fits(r flotilla.Rollout, waves []flotilla.Wave) bool {
	if c.version != r.Version || c.status != r.Status || len(c.waves) != len(waves) {
		return false
	}
	for i, w := range waves {
		if c.waves[i].status != w.Status || c.waves[i].unwritten != w.Unwritten {
			return false
		}
	}
	return true
}

// displayWaves is waves for GetRollout: counts of a large rollout may be
// up to CountsMaxAge old.
func (s *Store) displayWaves(ctx context.Context, r flotilla.Rollout) ([]flotilla.Wave, error) {
	return s.countedWaves(ctx, s.rd, r, s.countsReuse(r))
}

// countsReuse is how old r's cached counts may be when read for display:
// 0 (never cached) for a rollout of fewer than CountsCacheFrom devices, or
// with a negative CountsMaxAge.
func (s *Store) countsReuse(r flotilla.Rollout) time.Duration {
	if s.CountsMaxAge < 0 || r.Total < cmp.Or(s.CountsCacheFrom, DefaultCountsCacheFrom) {
		return 0
	}
	return cmp.Or(s.CountsMaxAge, DefaultCountsMaxAge)
}

// fillCounts fills waves' counts: from the cache when reuse is positive
// and an entry younger than reuse fits them, otherwise read. Counts read
// for display are kept, and so are the scheduler's (reuse 0, outside a
// transaction) for a rollout large enough to be cached: its snapshot
// counts at every look, and what it read is as current as a display read
// made then, so a dashboard need not read the same counts again.
func (s *Store) fillCounts(ctx context.Context, q querier, r flotilla.Rollout, waves []flotilla.Wave, reuse time.Duration) error {
	now := time.Now()
	use := reuse > 0
	if use {
		s.counts.mu.Lock()
		c, ok := s.counts.m[r.ID]
		s.counts.mu.Unlock()
		if ok && now.Sub(c.at) < reuse && c.fits(r, waves) {
			for i, w := range c.waves {
				waves[i].Counts, waves[i].Waiting, waves[i].Unhealthy = maps.Clone(w.counts), w.waiting, w.unhealthy
			}
			return nil
		}
	}
	if err := s.countWaves(ctx, q, r.ID, waves); err != nil {
		return err
	}
	if !use && (q != s.rd || s.countsReuse(r) == 0) {
		return nil
	}
	c := cachedCounts{at: now, version: r.Version, status: r.Status, waves: make([]waveCounts, len(waves))}
	for i, w := range waves {
		c.waves[i] = waveCounts{maps.Clone(w.Counts), w.Waiting, w.Unhealthy, w.Status, w.Unwritten}
	}
	s.counts.mu.Lock()
	if s.counts.m == nil || len(s.counts.m) >= 1000 {
		s.counts.m = map[string]cachedCounts{} // only running rollouts use it: a few
	}
	s.counts.m[r.ID] = c
	s.counts.mu.Unlock()
	return nil
}
