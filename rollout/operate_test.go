package rollout_test

import (
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/rollout"
)

func TestOperate(t *testing.T) {
	running := func() *fleet { return newFleet(flotilla.Policy{}, 2, 2).set(0, 1, flotilla.StateFailed, time.Minute) }
	failed := rollout.Deployment{ID: 1, Wave: 0, State: flotilla.StateFailed}
	tests := []struct {
		name   string
		s      rollout.Snapshot
		op     rollout.Op
		want   []rollout.ActionKind
		status flotilla.RolloutStatus // of the last set_status, if any
		code   string
	}{
		{name: "pause a running rollout", s: running().s, op: rollout.OpPause, want: []rollout.ActionKind{rollout.ActSetStatus}, status: flotilla.RolloutPaused},
		{name: "pause a paused rollout", s: running().status(flotilla.RolloutPaused).s, op: rollout.OpPause, code: flotilla.EConflict},
		{name: "resume accepts running waves' errors and restarts their runs", s: running().status(flotilla.RolloutPaused).s, op: rollout.OpResume,
			want: []rollout.ActionKind{rollout.ActAckErrors, rollout.ActStartRun, rollout.ActSetStatus}, status: flotilla.RolloutRunning},
		{name: "resume a running rollout", s: running().s, op: rollout.OpResume, code: flotilla.EConflict},
		{name: "abort cancels, aborts waves, ends", s: running().s, op: rollout.OpAbort,
			want: []rollout.ActionKind{rollout.ActCancel, rollout.ActAbortWaves, rollout.ActSetStatus}, status: flotilla.RolloutAborted},
		{name: "abort a finished rollout", s: running().status(flotilla.RolloutCompleted).s, op: rollout.OpAbort, code: flotilla.EConflict},
		{name: "retry with nothing failed", s: running().s, op: rollout.OpRetry, code: flotilla.EConflict},
		{name: "retry re-runs failures and reopens their wave", s: func() rollout.Snapshot {
			s := running().status(flotilla.RolloutPartial).s
			s.Failed = []rollout.Deployment{failed}
			return s
		}(), op: rollout.OpRetry, want: []rollout.ActionKind{rollout.ActRetry, rollout.ActReopenWave, rollout.ActStartRun, rollout.ActSetStatus}, status: flotilla.RolloutRunning},
		{name: "retry an aborted rollout", s: func() rollout.Snapshot {
			s := running().status(flotilla.RolloutAborted).s
			s.Failed = []rollout.Deployment{failed}
			return s
		}(), op: rollout.OpRetry, code: flotilla.EConflict},
		{name: "next wave starts the first scheduled wave", s: running().s, op: rollout.OpNextWave, want: []rollout.ActionKind{rollout.ActStartWave}},
		{name: "next wave with none left", s: running().set(1, 1, flotilla.StatePending, time.Minute).s, op: rollout.OpNextWave, code: flotilla.EConflict},
		{name: "unknown op", s: running().s, op: "explode", code: flotilla.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acts, err := rollout.Operate(tt.s, tt.op, now)
			if flotilla.ErrorCode(err) != tt.code {
				t.Fatalf("error %v, want code %q", err, tt.code)
			}
			if tt.code != "" {
				return
			}
			var kinds []rollout.ActionKind
			var status flotilla.RolloutStatus
			for _, a := range acts {
				kinds = append(kinds, a.Kind)
				if a.Kind == rollout.ActSetStatus {
					status = a.Status
				}
				if a.Kind == rollout.ActStartWave && *a.Wave != 1 {
					t.Fatalf("next wave started wave %d, want 1", *a.Wave)
				}
			}
			if len(kinds) != len(tt.want) {
				t.Fatalf("actions %v, want %v", kinds, tt.want)
			}
			for i := range kinds {
				if kinds[i] != tt.want[i] {
					t.Fatalf("actions %v, want %v", kinds, tt.want)
				}
			}
			if status != tt.status {
				t.Fatalf("status %q, want %q", status, tt.status)
			}
		})
	}
}
