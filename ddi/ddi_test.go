package ddi_test

import (
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
)

func TestSleepRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{0, 30 * time.Second, 5 * time.Minute, 3*time.Minute + 40*time.Second, 26 * time.Hour} {
		s := ddi.FormatSleep(d)
		got, err := ddi.ParseSleep(s)
		if err != nil || got != d {
			t.Errorf("ParseSleep(FormatSleep(%v) = %q) = %v, %v", d, s, got, err)
		}
	}
	if ddi.FormatSleep(220*time.Second) != "00:03:40" {
		t.Fatal(ddi.FormatSleep(220 * time.Second))
	}
	for _, bad := range []string{"", "5m", "00:60:00", "a:b:c", "-1:00:00", "1:2", "1:2:3:4", "00: 5:00", "+1:00:00", "00:00:60"} {
		if _, err := ddi.ParseSleep(bad); err == nil {
			t.Errorf("ParseSleep(%q) succeeded", bad)
		}
	}
}

func FuzzParseSleep(f *testing.F) {
	for _, s := range []string{"00:05:00", "26:00:00", "1:2:3", "00:60:00", "999999999:59:59", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ddi.ParseSleep(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseSleep(%q) = %v", s, d)
		}
		if again, err := ddi.ParseSleep(ddi.FormatSleep(d)); err != nil || again != d {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, d, ddi.FormatSleep(d), again, err)
		}
	})
}
