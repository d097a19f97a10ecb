package maintenance_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/ddi"
	"github.com/flotilla-ota/flotilla/maintenance"
)

// TestBackoffTable reproduces every row of hawkBit's table (seed 002) with
// its defaults: polling 5:00, minimum 0:30, three polls.
func TestBackoffTable(t *testing.T) {
	rows := []struct{ until, sleep string }{
		{"00:21:00", "00:05:00"},
		{"00:16:00", "00:05:00"},
		{"00:11:00", "00:03:40"},
		{"00:07:20", "00:02:27"},
		{"00:04:53", "00:01:38"},
		{"00:02:10", "00:00:43"},
		{"00:01:27", "00:00:30"},
		{"00:00:57", "00:00:30"},
		{"00:00:27", "00:00:30"},
		{"-00:00:03", "00:05:00"},
	}
	for _, r := range rows {
		neg := strings.HasPrefix(r.until, "-")
		u, err := ddi.ParseSleep(strings.TrimPrefix(r.until, "-"))
		if err != nil {
			t.Fatal(err)
		}
		if neg {
			u = -u
		}
		if got := ddi.FormatSleep(maintenance.DefaultBackoff.PollingSleep(u)); got != r.sleep {
			t.Errorf("time until start %s: polling %s, want %s", r.until, got, r.sleep)
		}
	}
}

func mustParse(t *testing.T, schedule, duration, zone string) *maintenance.Window {
	t.Helper()
	w, err := maintenance.Parse(flotilla.MaintenanceWindow{Schedule: schedule, Duration: duration, Timezone: zone})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestAvailability(t *testing.T) {
	// Saturdays 23:00-23:30 at +02:00, i.e. 21:00-21:30 UTC.
	w := mustParse(t, "0 0 23 ? * SAT", "00:30:00", "+02:00")
	sat := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) // a Saturday
	tests := []struct {
		at   time.Time
		want bool
	}{
		{sat.Add(20*time.Hour + 59*time.Minute), false},
		{sat.Add(21 * time.Hour), true},
		{sat.Add(21*time.Hour + 29*time.Minute + 59*time.Second), true},
		{sat.Add(21*time.Hour + 30*time.Minute), false},
		{sat.Add(24 * time.Hour), false},
	}
	for _, tt := range tests {
		if got := w.Available(tt.at); got != tt.want {
			t.Errorf("Available(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
	next, ok := w.NextStart(sat)
	if !ok || !next.Equal(sat.Add(21*time.Hour)) {
		t.Fatalf("NextStart = %s, %v", next.UTC(), ok)
	}
	change, ok := w.NextChange(sat.Add(21*time.Hour + 10*time.Minute))
	if !ok || !change.Equal(sat.Add(21*time.Hour+30*time.Minute)) {
		t.Fatalf("NextChange inside window = %s", change.UTC())
	}
	// IANA zones follow daylight saving: 01:00 in Berlin is 00:00 UTC in winter.
	berlin := mustParse(t, "0 0 1 * * ?", "01:00:00", "Europe/Berlin")
	if !berlin.Available(time.Date(2026, 12, 1, 0, 30, 0, 0, time.UTC)) {
		t.Error("Berlin window not available at 00:30 UTC in December")
	}
}

func TestLapsedSchedule(t *testing.T) {
	// Only in 2017, as in hawkBit's example: long gone.
	w := mustParse(t, "0 0 23 ? * SAT 2017", "00:30:00", "+02:00")
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	if !w.Lapsed(now) || w.Available(now) {
		t.Fatal("2017 schedule not lapsed in 2026")
	}
	if _, ok := w.NextStart(now); ok {
		t.Fatal("lapsed schedule has a next start")
	}
	// A yearly window still to come is not lapsed.
	if mustParse(t, "0 0 12 1 1 ? 2030", "01:00:00", "UTC").Lapsed(now) {
		t.Fatal("2030 window reported lapsed")
	}
}

func TestInvalidWindows(t *testing.T) {
	for _, tc := range []struct {
		w    flotilla.MaintenanceWindow
		want string
	}{
		{flotilla.MaintenanceWindow{Schedule: "0 0 23 * *", Duration: "00:30:00"}, "6 or 7 fields"},
		{flotilla.MaintenanceWindow{Schedule: "0 0 25 ? * SAT", Duration: "00:30:00"}, "schedule"},
		{flotilla.MaintenanceWindow{Schedule: "0 0 23 ? * SAT", Duration: "30m"}, "duration"},
		{flotilla.MaintenanceWindow{Schedule: "0 0 23 ? * SAT", Duration: "00:00:00"}, "longer than zero"},
		{flotilla.MaintenanceWindow{Schedule: "0 0 23 ? * SAT", Duration: "00:30:00", Timezone: "Mars/Olympus"}, "timezone"},
		{flotilla.MaintenanceWindow{Schedule: "0 0 23 ? * SAT", Duration: "00:30:00", Timezone: "+25:00"}, "timezone"},
	} {
		err := maintenance.Validate(tc.w)
		if !flotilla.IsCode(err, flotilla.EInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want invalid mentioning %q", tc.w, err, tc.want)
		}
	}
}

// TestDatesAMonthLacks: the 29th, 30th or 31st fire only in months that
// have them (the cron library alone rolls February 30th to March 2nd),
// and a date that never comes gives no window at all.
func TestDatesAMonthLacks(t *testing.T) {
	from := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		schedule string
		want     []string // the next starts, in order; none for a schedule that never opens
	}{
		{"0 0 2 29 2 ?", []string{"2028-02-29", "2032-02-29"}},
		{"0 0 2 30 * ?", []string{"2027-01-30", "2027-03-30", "2027-04-30"}},
		{"0 0 2 31 * ?", []string{"2027-01-31", "2027-03-31", "2027-05-31"}},
		{"0 0 2 1-3 FEB ?", []string{"2027-02-01", "2027-02-02", "2027-02-03", "2028-02-01"}},
		{"0 0 2 30 2 ?", nil},
		{"0 0 2 29 2 ? 2099", nil},
	} {
		w := mustParse(t, tc.schedule, "01:00:00", "UTC")
		at := from
		var got []string
		for range tc.want {
			n, ok := w.NextStart(at)
			if !ok {
				break
			}
			got = append(got, n.UTC().Format("2006-01-02"))
			at = n
		}
		if tc.want == nil {
			if n, ok := w.NextStart(from); ok {
				t.Errorf("%s: starts %s, want never", tc.schedule, n)
			}
			if w.OpensWithin(from, maintenance.Horizon) {
				t.Errorf("%s: opens within the horizon", tc.schedule)
			}
			continue
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: starts %v, want %v", tc.schedule, got, tc.want)
		}
	}
}
