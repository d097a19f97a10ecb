package server

import (
	"testing"
	"time"
)

// TestFeedbackHoldDefault: held feedback relieves SQLite's single writer
// and is off by default where replicas share a PostgreSQL; an explicit
// value wins either way, a negative one turns it off.
func TestFeedbackHoldDefault(t *testing.T) {
	for _, tc := range []struct {
		url  string
		set  time.Duration
		want time.Duration
	}{
		{"", 0, time.Second},
		{"sqlite:///tmp/x.db", 0, time.Second},
		{"postgres://u@127.0.0.1:5432/db", 0, -1},
		{"postgresql://u@127.0.0.1:5432/db", 0, -1},
		{"postgres://u@127.0.0.1:5432/db", 2 * time.Second, 2 * time.Second},
		{"sqlite:///tmp/x.db", -1, -1},
	} {
		got := Config{DatabaseURL: tc.url, FeedbackHold: tc.set}.withDefaults().FeedbackHold
		if got != tc.want {
			t.Errorf("%q with %v: hold %v, want %v", tc.url, tc.set, got, tc.want)
		}
	}
}
