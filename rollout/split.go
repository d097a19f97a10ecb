// Package rollout decides how a rollout proceeds. It is pure: Split assigns
// devices to waves, and Plan takes a snapshot of a rollout and the current
// time and returns the actions to take. The scheduler loads snapshots and
// applies plans; nothing here does I/O or reads the clock.
package rollout

import (
	"fmt"
	"math"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/label"
)

// Member is a device in a rollout's snapshot.
type Member struct {
	ID     string
	Labels map[string]string
}

// WaveDef is a wave as Split defines it.
type WaveDef struct {
	Name string
	Size int
}

// EvenWaves splits total members, taken in order, into n even waves (1
// when n is not positive): the later waves take the remainder, so a
// canary stays small.
func EvenWaves(total, n int) ([]WaveDef, error) {
	if n <= 0 {
		n = 1
	}
	if n > 1000 {
		return nil, flotilla.Errorf(flotilla.EInvalid, "waves must be from 1 to 1000, got %d", n)
	}
	waves := make([]WaveDef, n)
	base, extra := total/n, total%n
	for w := range waves {
		size := base
		if w >= n-extra {
			size++
		}
		waves[w] = WaveDef{Name: fmt.Sprintf("wave-%d", w+1), Size: size}
	}
	return waves, nil
}

// Waves are the waves a rollout records for defs, in order.
func Waves(defs []WaveDef) []flotilla.Wave {
	waves := make([]flotilla.Wave, len(defs))
	for i, d := range defs {
		waves[i] = flotilla.Wave{Index: i, Name: d.Name, Size: d.Size}
	}
	return waves
}

// Split assigns members to waves: n even waves (the later ones take the
// remainder, so a canary stays small), or explicit groups taken in order
// from the devices not yet assigned — by selector, count or percentage of
// all devices. Devices left over go to a final wave named "remaining".
// It returns each member's wave index and the waves.
func Split(members []Member, n int, groups []flotilla.WaveSpec) ([]int, []WaveDef, error) {
	total := len(members)
	assign := make([]int, total)
	if len(groups) == 0 {
		waves, err := EvenWaves(total, n)
		if err != nil {
			return nil, nil, err
		}
		i := 0
		for w, wd := range waves {
			for range wd.Size {
				assign[i] = w
				i++
			}
		}
		return assign, waves, nil
	}
	if len(groups) > 1000 {
		return nil, nil, flotilla.Errorf(flotilla.EInvalid, "at most 1000 groups are allowed")
	}
	for i := range assign {
		assign[i] = -1
	}
	var waves []WaveDef
	for gi, g := range groups {
		name := g.Name
		if name == "" {
			name = fmt.Sprintf("wave-%d", gi+1)
		}
		limit := math.MaxInt
		switch {
		case g.Count != nil && g.Percent != nil:
			return nil, nil, flotilla.Errorf(flotilla.EInvalid, "group %q: give count or percent, not both", name)
		case g.Count != nil:
			if *g.Count < 0 {
				return nil, nil, flotilla.Errorf(flotilla.EInvalid, "group %q: count must not be negative", name)
			}
			limit = *g.Count
		case g.Percent != nil:
			if *g.Percent <= 0 || *g.Percent > 100 {
				return nil, nil, flotilla.Errorf(flotilla.EInvalid, "group %q: percent must be above 0 and at most 100", name)
			}
			limit = int(math.Ceil(*g.Percent * float64(total) / 100))
		case g.Selector == "":
			return nil, nil, flotilla.Errorf(flotilla.EInvalid, "group %q needs a selector, a count or a percent", name)
		}
		sel, err := label.Parse(g.Selector)
		if err != nil {
			return nil, nil, flotilla.Errorf(flotilla.EInvalid, "group %q: %s", name, flotilla.ErrorMessage(err))
		}
		size := 0
		for i, m := range members {
			if size >= limit {
				break
			}
			if assign[i] == -1 && sel.Matches(m.Labels) {
				assign[i] = len(waves)
				size++
			}
		}
		waves = append(waves, WaveDef{Name: name, Size: size})
	}
	rest := 0
	for i := range assign {
		if assign[i] == -1 {
			assign[i] = len(waves)
			rest++
		}
	}
	if rest > 0 {
		waves = append(waves, WaveDef{Name: "remaining", Size: rest})
	}
	return assign, waves, nil
}
