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

// TestHoldWindow: a first step is held however long after the fetch it
// comes (within holdOpen), the later ones within HoldFeedback of the
// first; anything else announced for the device closes the window.
func TestHoldWindow(t *testing.T) {
	c := New(nil, nil, nil, nil, Config{HoldFeedback: time.Second})
	now := time.Now()
	d := flotilla.Deployment{Tenant: "acme", DeviceID: "d1", ID: 7, State: flotilla.StateDownloading, RetrievedAt: &now}
	ref := Ref{Tenant: "acme", DeviceID: "d1", ID: 7}
	key := [2]string{"acme", "d1"}
	f := flotilla.Feedback{Execution: flotilla.ExecProceeding}

	c.synced(d)
	c.held.m[key].synced = time.Now().Add(-10 * time.Second) // a slow device, or a loaded server
	if _, ok := c.hold(ref, f, now); !ok {
		t.Fatal("a first step 10 s after the fetch was not held")
	}
	if _, ok := c.hold(ref, f, now); !ok {
		t.Fatal("a second step at once was not held")
	}
	c.held.m[key].first = time.Now().Add(-time.Second)
	if _, ok := c.hold(ref, f, now); ok {
		t.Fatal("held a step a HoldFeedback after the first: that one is due")
	}
	c.takeHeld(ref)

	c.synced(d)
	c.held.m[key].synced = time.Now().Add(-holdOpen)
	if _, ok := c.hold(ref, f, now); ok {
		t.Fatal("held a first step holdOpen after the write")
	}

	c.synced(d)
	c.InvalidateDevice("acme", "d2")
	if _, ok := c.hold(ref, f, now); !ok {
		t.Fatal("another device's change closed the window")
	}
	c.InvalidateDevice("acme", "d1")
	if _, ok := c.hold(ref, f, now); ok {
		t.Fatal("held a step after a change announced for the device")
	}
}
