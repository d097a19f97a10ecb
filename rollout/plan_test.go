package rollout_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) *time.Time { t := now.Add(-d); return &t }
func f(v float64) *float64           { return &v }
func i(v int) *int                   { return &v }

// fleet builds a snapshot: waves of the given sizes, every device
// scheduled and seen a minute ago unless changed.
type fleet struct {
	s      rollout.Snapshot
	nextID int64
}

func newFleet(p flotilla.Policy, sizes ...int) *fleet {
	fl := &fleet{s: rollout.Snapshot{Rollout: flotilla.Rollout{ID: "r1", Status: flotilla.RolloutRunning, Policy: p, StartedAt: ago(time.Hour)}}}
	for w, n := range sizes {
		fl.s.Waves = append(fl.s.Waves, flotilla.Wave{Index: w, Name: fmt.Sprintf("wave-%d", w+1), Size: n, Status: flotilla.WaveScheduled,
			Counts: map[flotilla.DeploymentState]int{flotilla.StateScheduled: n}})
		for k := 0; k < n; k++ {
			fl.nextID++
			fl.s.Open = append(fl.s.Open, rollout.Deployment{ID: fl.nextID, DeviceID: fmt.Sprintf("d%d-%d", w, k), Wave: w,
				State: flotilla.StateScheduled, Attempt: 1, LastSeen: ago(time.Minute)})
		}
	}
	return fl
}

// set moves the first n scheduled devices of wave w to state, released
// `since` ago; finished ones leave Open.
func (fl *fleet) set(w, n int, state flotilla.DeploymentState, since time.Duration) *fleet {
	wave := &fl.s.Waves[w]
	if wave.Status == flotilla.WaveScheduled {
		wave.Status, wave.StartedAt = flotilla.WaveRunning, ago(time.Hour)
	}
	var keep []rollout.Deployment
	for _, d := range fl.s.Open {
		if n > 0 && d.Wave == w && d.State == flotilla.StateScheduled {
			n--
			wave.Counts[flotilla.StateScheduled]--
			wave.Counts[state]++
			d.State, d.StartedAt = state, ago(since)
			if state.Terminal() {
				if state == flotilla.StateFailed || state == flotilla.StateTimedOut {
					fl.s.Retryable = append(fl.s.Retryable, d)
				}
				if state == flotilla.StateSucceeded {
					fl.s.Successes++
				}
				continue
			}
		}
		keep = append(keep, d)
	}
	fl.s.Open = keep
	return fl
}

func (fl *fleet) wave(w int, fn func(*flotilla.Wave)) *fleet { fn(&fl.s.Waves[w]); return fl }

func (fl *fleet) status(st flotilla.RolloutStatus) *fleet { fl.s.Rollout.Status = st; return fl }

func scenarios() map[string]rollout.Snapshot {
	return map[string]rollout.Snapshot{
		"start_first_wave": newFleet(flotilla.Policy{}, 3, 3).s,
		"success_threshold_with_grace": newFleet(flotilla.Policy{SuccessThreshold: f(75), GraceSeconds: 60}, 4, 4).
			set(0, 3, flotilla.StateSucceeded, time.Minute).set(0, 1, flotilla.StateInstalling, time.Minute).s,
		"grace_elapsed_starts_next_wave": newFleet(flotilla.Policy{SuccessThreshold: f(75), GraceSeconds: 60}, 4, 4).
			set(0, 3, flotilla.StateSucceeded, 2*time.Minute).set(0, 1, flotilla.StateInstalling, 2*time.Minute).
			wave(0, func(w *flotilla.Wave) { w.SuccessAt = ago(61 * time.Second) }).s,
		"error_threshold_pauses": newFleet(flotilla.Policy{ErrorThreshold: f(20)}, 10, 10).
			set(0, 2, flotilla.StateFailed, time.Minute).set(0, 8, flotilla.StateDownloading, time.Minute).s,
		"error_threshold_aborts": newFleet(flotilla.Policy{ErrorThreshold: f(20), ErrorAction: "abort"}, 10, 10).
			set(0, 2, flotilla.StateFailed, time.Minute).set(0, 8, flotilla.StateDownloading, time.Minute).s,
		"max_failures_per_wave": newFleet(flotilla.Policy{MaxFailuresPerWave: i(2)}, 10).
			set(0, 3, flotilla.StateFailed, time.Minute).set(0, 7, flotilla.StatePending, time.Minute).s,
		"require_ok_discounts_unhealthy": newFleet(flotilla.Policy{RequireOK: true}, 4, 4).
			set(0, 4, flotilla.StateSucceeded, time.Minute).wave(0, func(w *flotilla.Wave) { w.Unhealthy = 1 }).s,
		"skip_offline": func() rollout.Snapshot {
			fl := newFleet(flotilla.Policy{SkipOffline: true, OfflineAfter: flotilla.Duration(10 * time.Minute)}, 4)
			fl.s.Open[1].LastSeen = nil
			fl.s.Open[2].LastSeen = ago(time.Hour)
			return fl.s
		}(),
		"min_success_ratio_partial": newFleet(flotilla.Policy{SuccessThreshold: f(80), MinSuccessRatio: f(0.95)}, 10).
			set(0, 9, flotilla.StateSucceeded, time.Minute).set(0, 1, flotilla.StateFailed, time.Minute).
			wave(0, func(w *flotilla.Wave) { w.SuccessAt = ago(time.Minute) }).s,
		"min_success_ratio_completed": newFleet(flotilla.Policy{SuccessThreshold: f(80), MinSuccessRatio: f(0.9)}, 10).
			set(0, 9, flotilla.StateSucceeded, time.Minute).set(0, 1, flotilla.StateFailed, time.Minute).
			wave(0, func(w *flotilla.Wave) { w.SuccessAt = ago(time.Minute) }).s,
		"abort_on_zero_eligible": func() rollout.Snapshot {
			fl := newFleet(flotilla.Policy{SkipOffline: true, AbortOnZeroEligible: true}, 2, 2)
			fl.set(0, 2, flotilla.StateSucceeded, time.Minute).wave(0, func(w *flotilla.Wave) {
				w.SuccessAt, w.Status, w.FinishedAt = ago(time.Minute), flotilla.WaveSucceeded, ago(time.Minute)
			})
			for k := range fl.s.Open {
				fl.s.Open[k].LastSeen = ago(24 * time.Hour)
			}
			return fl.s
		}(),
		"device_timeout": newFleet(flotilla.Policy{DeviceTimeout: flotilla.Duration(10 * time.Minute)}, 3).
			set(0, 1, flotilla.StateDownloading, 11*time.Minute).set(0, 2, flotilla.StateInstalling, 5*time.Minute).s,
		"max_in_flight": newFleet(flotilla.Policy{MaxInFlight: 3}, 10).set(0, 1, flotilla.StateDownloading, time.Minute).s,
		"exponential_rate": func() rollout.Snapshot {
			fl := newFleet(flotilla.Policy{Rate: &flotilla.Rate{StartPerMinute: 2, Factor: 2, IncrementEvery: 5}}, 30)
			fl.set(0, 10, flotilla.StateSucceeded, 5*time.Minute).set(0, 3, flotilla.StateDownloading, 30*time.Second)
			fl.s.ReleasedAt = []time.Time{*ago(30 * time.Second), *ago(30 * time.Second), *ago(40 * time.Second)}
			return fl.s
		}(),
		"retries": func() rollout.Snapshot {
			fl := newFleet(flotilla.Policy{Retries: 1, ErrorThreshold: f(50)}, 6)
			fl.set(0, 3, flotilla.StateFailed, time.Minute).set(0, 3, flotilla.StateSucceeded, time.Minute)
			fl.s.Retryable[2].Attempt = 2 // already retried once
			return fl.s
		}(),
		"superseded_devices_are_not_eligible": newFleet(flotilla.Policy{}, 5, 2).
			set(0, 2, flotilla.StateCanceled, time.Minute).set(0, 3, flotilla.StateSucceeded, time.Minute).s,
		"wave_below_threshold_pauses": newFleet(flotilla.Policy{}, 4, 4).
			set(0, 3, flotilla.StateSucceeded, time.Minute).set(0, 1, flotilla.StateFailed, time.Minute).s,
		"resumed_error_continues": newFleet(flotilla.Policy{ErrorThreshold: f(20)}, 4, 4).
			set(0, 2, flotilla.StateSucceeded, time.Minute).set(0, 2, flotilla.StateFailed, time.Minute).
			wave(0, func(w *flotilla.Wave) { w.ErrorAck = true }).s,
		"paused_only_times_out": newFleet(flotilla.Policy{DeviceTimeout: flotilla.Duration(time.Minute)}, 4).
			set(0, 1, flotilla.StateDownloading, 2*time.Minute).set(0, 1, flotilla.StateDownloading, 10*time.Second).
			status(flotilla.RolloutPaused).s,
		"lapsed_window_cancels": func() rollout.Snapshot {
			fl := newFleet(flotilla.Policy{}, 3)
			fl.set(0, 1, flotilla.StateSucceeded, time.Minute).set(0, 1, flotilla.StateDownloaded, time.Minute)
			fl.s.Rollout.Window = &flotilla.MaintenanceWindow{Schedule: "0 0 23 ? * SAT 2017", Duration: "00:30:00", Timezone: "+02:00"}
			return fl.s
		}(),
	}
}

func TestPlanGolden(t *testing.T) {
	for name, snap := range scenarios() {
		t.Run(name, func(t *testing.T) {
			plan := rollout.Compute(snap, now)
			got, _ := json.MarshalIndent(plan, "", "  ")
			got = append(got, '\n')
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				os.WriteFile(path, got, 0o644)
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("missing golden file (run go test ./rollout -update): %v", err)
			}
			if string(got) != string(want) {
				t.Errorf("plan differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

// TestPlanIsPure: the same snapshot and time give the same plan, and the
// snapshot is not modified.
func TestPlanIsPure(t *testing.T) {
	for name, snap := range scenarios() {
		before, _ := json.Marshal(snap)
		a, _ := json.Marshal(rollout.Compute(snap, now))
		b, _ := json.Marshal(rollout.Compute(snap, now))
		after, _ := json.Marshal(snap)
		if string(a) != string(b) || string(before) != string(after) {
			t.Errorf("%s: plan is not a pure function of its input", name)
		}
	}
}

func TestPlanIgnoresInactiveRollouts(t *testing.T) {
	for _, st := range []flotilla.RolloutStatus{flotilla.RolloutReady, flotilla.RolloutCompleted, flotilla.RolloutAborted, flotilla.RolloutDraft} {
		if p := rollout.Compute(newFleet(flotilla.Policy{}, 2).status(st).s, now); len(p.Actions) != 0 {
			t.Errorf("%s rollout got actions %+v", st, p.Actions)
		}
	}
}

// TestPlanLooksAtInFlightOnlyWhenNeedsInFlightSaysSo: a store may leave
// in-flight deployments out of Open unless NeedsInFlight; every scenario
// must then plan the same without them, and some scenario that needs them
// must plan differently, or NeedsInFlight would claim too much.
func TestPlanLooksAtInFlightOnlyWhenNeedsInFlightSaysSo(t *testing.T) {
	differs := 0
	for name, s := range scenarios() {
		trimmed := s
		trimmed.Open = nil
		for _, d := range s.Open {
			if d.State == flotilla.StateScheduled {
				trimmed.Open = append(trimmed.Open, d)
			}
		}
		full, _ := json.Marshal(rollout.Compute(s, now))
		without, _ := json.Marshal(rollout.Compute(trimmed, now))
		if rollout.NeedsInFlight(s.Rollout) {
			if string(full) != string(without) {
				differs++
			}
			continue
		}
		if string(full) != string(without) {
			t.Errorf("%s: the plan depends on in-flight deployments, but NeedsInFlight is false\n with: %s\n without: %s", name, full, without)
		}
	}
	if differs == 0 {
		t.Error("no scenario that NeedsInFlight plans differently without its in-flight deployments")
	}
}

func TestScheduledThrough(t *testing.T) {
	waves := func(st ...flotilla.WaveStatus) []flotilla.Wave {
		var out []flotilla.Wave
		for i, s := range st {
			out = append(out, flotilla.Wave{Index: i, Status: s})
		}
		return out
	}
	S, R, OK, F, A := flotilla.WaveScheduled, flotilla.WaveRunning, flotilla.WaveSucceeded, flotilla.WaveFailed, flotilla.WaveAborted
	for _, tc := range []struct {
		waves         []flotilla.Wave
		without, with int
	}{
		{waves(S, S, S), -1, 0},
		{waves(R, S, S), 0, 1},
		{waves(OK, F, S), 1, 2},
		{waves(OK, R, R), 2, 3},
		{waves(OK, A, A), 0, 1},
	} {
		if got := rollout.ScheduledThrough(tc.waves, false); got != tc.without {
			t.Errorf("%v without the next wave: %d, want %d", tc.waves, got, tc.without)
		}
		if got := rollout.ScheduledThrough(tc.waves, true); got != tc.with {
			t.Errorf("%v with the next wave: %d, want %d", tc.waves, got, tc.with)
		}
	}
}
