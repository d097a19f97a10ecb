package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/events"
)

func ev(device, state string) events.Event {
	return events.Event{Type: "deployment", Tenant: "t", DeviceID: device, Key: "deployment/" + device,
		Data: events.Message(map[string]string{"deviceId": device, "state": state})}
}

func states(t *testing.T, evs []events.Event) []string {
	var out []string
	for _, e := range evs {
		var m map[string]any
		if err := json.Unmarshal(e.Data, &m); err != nil {
			t.Fatal(err)
		}
		if m["seq"] == nil || m["timestamp"] == nil {
			t.Fatalf("event without seq/timestamp: %s", e.Data)
		}
		out = append(out, fmt.Sprintf("%s=%s", m["deviceId"], m["state"]))
	}
	return out
}

func TestFilterAndOrder(t *testing.T) {
	h := events.NewHub(events.HubConfig{})
	s, _ := h.Subscribe(events.Filter{Tenant: "t", DeviceID: "a"}, 0)
	defer s.Close()
	h.Publish(ev("a", "pending"))
	h.Publish(ev("b", "pending"))
	h.Publish(events.Event{Type: "deployment", Tenant: "other", DeviceID: "a", Data: events.Message(map[string]string{})})
	h.Publish(ev("a", "succeeded"))
	got, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(states(t, got), " ") != "a=pending a=succeeded" {
		t.Fatalf("got %v", states(t, got))
	}
}

func TestSlowSubscriberCoalescesThenDrops(t *testing.T) {
	h := events.NewHub(events.HubConfig{CoalesceAfter: 4, DropAfter: 10})
	slow, _ := h.Subscribe(events.Filter{}, 0)
	defer slow.Close()
	for i := 0; i < 100; i++ {
		h.Publish(ev(fmt.Sprintf("d%d", i%3), fmt.Sprint("s", i)))
	}
	got, err := slow.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Three devices: the backlog stays bounded and holds each device's
	// latest state, in order.
	s := states(t, got)
	if len(got) > 4 || !strings.Contains(strings.Join(s, " "), "d0=s99") || !strings.Contains(strings.Join(s, " "), "d2=s98") {
		t.Fatalf("coalesced backlog = %v", s)
	}
	// Many distinct keys overflow the hard limit: the subscriber is dropped
	// with a reason, and publishing never blocked.
	for i := 0; i < 50; i++ {
		h.Publish(ev(fmt.Sprintf("x%d", i), "pending"))
	}
	_, err = slow.Next(context.Background())
	var de *events.DroppedError
	if !errors.As(err, &de) || !strings.Contains(de.Reason, "too slow") {
		t.Fatalf("err = %v, want a drop", err)
	}
}

func TestResume(t *testing.T) {
	h := events.NewHub(events.HubConfig{Ring: 5})
	for i := 0; i < 3; i++ {
		h.Publish(ev("a", fmt.Sprint(i)))
	}
	s, resumed := h.Subscribe(events.Filter{}, 1)
	if !resumed {
		t.Fatal("not resumed from seq 1")
	}
	got, _ := s.Next(context.Background())
	if strings.Join(states(t, got), " ") != "a=1 a=2" {
		t.Fatalf("replayed %v", states(t, got))
	}
	s.Close()
	for i := 0; i < 10; i++ {
		h.Publish(ev("a", "x"))
	}
	if _, resumed := h.Subscribe(events.Filter{}, 2); resumed {
		t.Fatal("resumed past the ring; a snapshot is needed")
	}
	if _, resumed := h.Subscribe(events.Filter{}, 1000); resumed {
		t.Fatal("resumed from a future sequence")
	}
}

func TestBatchedProgressKeepsLatest(t *testing.T) {
	h := events.NewHub(events.HubConfig{BatchInterval: 20 * time.Millisecond})
	s, _ := h.Subscribe(events.Filter{}, 0)
	defer s.Close()
	for i := 0; i < 50; i++ {
		e := ev("a", fmt.Sprint("p", i))
		e.Batch = true
		h.Publish(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	got, err := s.Next(ctx)
	if err != nil || strings.Join(states(t, got), " ") != "a=p49" {
		t.Fatalf("batched = %v, %v", states(t, got), err)
	}
}

// TestInjectDropsStaleAndDuplicateStates: another replica's events may
// arrive twice (with the commit and forwarded) or out of order; a watcher
// sees each device's states move forward only, once.
func TestInjectDropsStaleAndDuplicateStates(t *testing.T) {
	h := events.NewHub(events.HubConfig{})
	s, _ := h.Subscribe(events.Filter{}, 0)
	defer s.Close()
	at := func(e events.Event, sec int) events.Event {
		e.Time = time.Date(2026, 6, 1, 12, 0, sec, 0, time.UTC)
		return e
	}
	h.Inject(at(ev("a", "succeeded"), 3))  // sent with the commit, first
	h.Inject(at(ev("a", "installing"), 2)) // forwarded, older
	h.Inject(at(ev("a", "succeeded"), 3))  // forwarded copy
	h.Inject(at(ev("b", "pending"), 1))
	h.Inject(at(ev("b", "downloading"), 2))
	got, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(states(t, got), " ") != "a=succeeded b=pending b=downloading" {
		t.Fatalf("got %v", states(t, got))
	}
}

// TestLocalStepOlderThanAnInjectedStateIsDropped: a step this replica
// wrote (held feedback flushed, progress batched) just before another
// replica wrote the device's final state must not reach watchers after
// that state.
func TestLocalStepOlderThanAnInjectedStateIsDropped(t *testing.T) {
	h := events.NewHub(events.HubConfig{BatchInterval: 20 * time.Millisecond})
	s, _ := h.Subscribe(events.Filter{}, 0)
	defer s.Close()
	at := func(e events.Event, sec int, batch bool) events.Event {
		e.Time, e.Batch = time.Date(2026, 6, 1, 12, 0, sec, 0, time.UTC), batch
		return e
	}
	h.Publish(at(ev("a", "installing"), 2, true)) // batched here, waiting
	h.Inject(at(ev("a", "succeeded"), 3, false))  // the final, from another replica
	h.Publish(at(ev("a", "downloaded"), 1, false))
	h.Publish(at(ev("b", "downloading"), 1, false))
	h.Publish(at(ev("a", "pending"), 4, false)) // a new deployment, later
	time.Sleep(60 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var all []string
	for len(all) < 3 {
		got, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("got %v, then %v", all, err)
		}
		all = append(all, states(t, got)...)
	}
	if strings.Join(all, " ") != "a=succeeded b=downloading a=pending" {
		t.Fatalf("got %v", all)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if got, err := s.Next(ctx2); err == nil {
		t.Fatalf("then %v", states(t, got))
	}
}
