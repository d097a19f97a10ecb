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
	for _, bad := range []string{"", "5m", "00:60:00", "a:b:c"} {
		if _, err := ddi.ParseSleep(bad); err == nil {
			t.Errorf("ParseSleep(%q) succeeded", bad)
		}
	}
}
