package core

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// TestHeldFeedbackIsBounded: devices choose their details' size, so what
// is held in memory is bounded in steps per device and in bytes overall;
// past either, a report is written at once.
func TestHeldFeedbackIsBounded(t *testing.T) {
	c := New(nil, nil, nil, nil, Config{HoldFeedback: time.Hour})
	now := time.Now()
	d := flotilla.Deployment{Tenant: "acme", DeviceID: "d1", ID: 7, State: flotilla.StateDownloading, RetrievedAt: &now}
	c.synced(d)
	ref := Ref{Tenant: "acme", DeviceID: "d1", ID: 7}
	f := flotilla.Feedback{Execution: flotilla.ExecProceeding, Details: []string{strings.Repeat("x", 1000)}}
	held := 0
	for range maxHeldSteps + 5 {
		if _, ok := c.hold(ref, f, now); ok {
			held++
		}
	}
	if held != maxHeldSteps {
		t.Fatalf("held %d steps of one device, want %d", held, maxHeldSteps)
	}
	if got := len(c.takeHeld(ref)); got != maxHeldSteps || c.held.bytes != 0 {
		t.Fatalf("took %d steps, %d bytes still counted", got, c.held.bytes)
	}
	c.synced(d)
	c.held.bytes = maxHeldBytes - stepSize(f) + 1
	if _, ok := c.hold(ref, f, now); ok {
		t.Fatal("held a step past the byte bound")
	}
	c.held.bytes = 0
	if _, ok := c.hold(ref, f, now); !ok {
		t.Fatal("refused a step within the bounds")
	}
	if _, ok := c.hold(Ref{Tenant: "acme", DeviceID: "d1", ID: 8}, f, now); ok {
		t.Fatal("held a step for a deployment the entry is not about")
	}
}
