package core

import (
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// TestDeviceViewPicksTheAction: a pending cancel comes first, then the
// oldest deployment that is not waiting for its wave; push deliveries are
// not the polling client's. The action is alone when nothing else would
// follow it.
func TestDeviceViewPicksTheAction(t *testing.T) {
	dep := func(id int64, st flotilla.DeploymentState) flotilla.Deployment {
		return flotilla.Deployment{ID: id, State: st, Delivery: flotilla.DeliveryPull}
	}
	push := dep(9, flotilla.StatePending)
	push.Delivery = flotilla.DeliveryPush
	for _, tc := range []struct {
		name   string
		open   []flotilla.Deployment
		action int64 // 0: none
		alone  bool
	}{
		{"idle", nil, 0, false},
		{"one", []flotilla.Deployment{dep(4, flotilla.StateDownloading)}, 4, true},
		{"only scheduled", []flotilla.Deployment{dep(4, flotilla.StateScheduled)}, 0, false},
		{"scheduled behind", []flotilla.Deployment{dep(4, flotilla.StateScheduled), dep(5, flotilla.StatePending)}, 5, true},
		{"cancel first", []flotilla.Deployment{dep(4, flotilla.StatePending), dep(5, flotilla.StateCancelRequested)}, 5, false},
		{"oldest first", []flotilla.Deployment{dep(4, flotilla.StatePending), dep(5, flotilla.StatePending)}, 4, false},
		{"push is not the client's", []flotilla.Deployment{dep(4, flotilla.StateInstalling), push}, 4, true},
		{"push alone", []flotilla.Deployment{push}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := deviceView(store.DevicePoll{Open: tc.open}, flotilla.TenantSettings{})
			var got int64
			if v.Action != nil {
				got = v.Action.ID
			}
			if got != tc.action || v.ActionAlone != tc.alone {
				t.Fatalf("action %d alone %v, want %d alone %v", got, v.ActionAlone, tc.action, tc.alone)
			}
		})
	}
}
