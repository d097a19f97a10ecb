package ratelimit_test

import (
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/ratelimit"
)

func TestBurstThenRate(t *testing.T) {
	l := ratelimit.New(10, 5) // 10/s, bursts of 5
	now := time.Unix(1_700_000_000, 0)
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow("dev", now); !ok {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("dev", now)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("sixth event at once: ok %v, wait %v", ok, wait)
	}
	if ok, _ := l.Allow("other", now); !ok {
		t.Fatal("another key is limited by the first")
	}
	if ok, _ := l.Allow("dev", now.Add(wait)); !ok {
		t.Fatal("refused after the wait it was given")
	}
	// Sustained: one event per 100ms keeps passing.
	at := now.Add(wait)
	for i := 0; i < 50; i++ {
		at = at.Add(100 * time.Millisecond)
		if ok, _ := l.Allow("dev", at); !ok {
			t.Fatalf("event %d at the sustained rate refused", i)
		}
	}
}

func TestBlockedDoesNotTake(t *testing.T) {
	l := ratelimit.New(1, 2)
	now := time.Unix(1_700_000_000, 0)
	for i := 0; i < 10; i++ {
		if b, _ := l.Blocked("ip", now); b {
			t.Fatal("Blocked took events")
		}
	}
	l.Allow("ip", now)
	l.Allow("ip", now)
	if b, wait := l.Blocked("ip", now); !b || wait <= 0 {
		t.Fatalf("after the burst: blocked %v, wait %v", b, wait)
	}
}

func TestNilAllowsEverything(t *testing.T) {
	var l *ratelimit.Limiter
	if ok, _ := l.Allow("x", time.Now()); !ok {
		t.Fatal("nil limiter refused")
	}
	if l = ratelimit.New(0, 10); l != nil {
		t.Fatal("rate 0 gave a limiter")
	}
}

func BenchmarkAllow(b *testing.B) {
	l := ratelimit.New(30, 300)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "tenant/device-" + string(rune('a'+i%26)) + string(rune(i))
	}
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i%len(keys)], now)
			i++
		}
	})
}

func TestAllowPairIsAllowOfTheJoinedKey(t *testing.T) {
	l := ratelimit.New(1, 2)
	now := time.Unix(1_700_000_000, 0)
	l.AllowPair("acme", "dev-1", now)
	l.Allow("acme/dev-1", now)
	if ok, _ := l.AllowPair("acme", "dev-1", now); ok {
		t.Fatal("the pair and the joined key are different buckets")
	}
}

func BenchmarkAllowPair(b *testing.B) {
	l := ratelimit.New(30, 300)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.AllowPair("default", "bench-0000042", now)
	}
}
