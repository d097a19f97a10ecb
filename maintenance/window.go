// Package maintenance decides when a device may install: recurring windows
// given as a Quartz cron schedule (with seconds, '?' and an optional year),
// a duration and a time zone, as hawkBit defines them; and how much sooner a
// device should poll as a window approaches.
//
// Everything here is pure: callers pass the time.
package maintenance

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones without relying on the host

	"github.com/reugn/go-quartz/quartz"

	"github.com/flotilla-ota/flotilla"
)

// Window is a parsed maintenance schedule.
type Window struct {
	spec     flotilla.MaintenanceWindow
	cron     *quartz.CronTrigger
	duration time.Duration
	loc      *time.Location
	// day and month check a fire time against the day-of-month and month
	// fields (nil: no check); see next.
	day, month func(int) bool
}

var (
	durationRE = regexp.MustCompile(`^(\d{1,3}):([0-5]\d):([0-5]\d)$`)
	offsetRE   = regexp.MustCompile(`^([+-])(\d{2}):(\d{2})$`)
)

// Parse validates a window. Errors are EInvalid and name the field at fault.
func Parse(w flotilla.MaintenanceWindow) (*Window, error) {
	m := durationRE.FindStringSubmatch(strings.TrimSpace(w.Duration))
	if m == nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "maintenance window duration %q is invalid: use HH:MM:SS, e.g. 00:30:00", w.Duration)
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	se, _ := strconv.Atoi(m[3])
	d := time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(se)*time.Second
	if d <= 0 {
		return nil, flotilla.Errorf(flotilla.EInvalid, "maintenance window duration %q must be longer than zero", w.Duration)
	}
	loc, err := ParseZone(w.Timezone)
	if err != nil {
		return nil, err
	}
	expr := strings.Join(strings.Fields(w.Schedule), " ")
	if n := len(strings.Fields(expr)); n != 6 && n != 7 {
		return nil, flotilla.Errorf(flotilla.EInvalid, "maintenance window schedule %q is invalid: a Quartz cron expression has 6 or 7 fields (seconds minutes hours day-of-month month day-of-week [year]), found %d", w.Schedule, n)
	}
	ct, err := quartz.NewCronTriggerWithLoc(expr, loc)
	if err != nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "maintenance window schedule %q is invalid: %s", w.Schedule, strings.TrimPrefix(err.Error(), "illegal argument: "))
	}
	f := strings.Fields(expr)
	day, _ := fieldMatcher(f[3], 1, 31, nil)
	month, _ := fieldMatcher(f[4], 1, 12, monthNames)
	return &Window{spec: w, cron: ct, duration: d, loc: loc, day: day, month: month}, nil
}

var monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}

// fieldMatcher reads a plain cron field — '*', '?', values, ranges, steps
// and lists — into a membership test. Fields with Quartz's special forms
// (L, W, #) give nil: they are not checked.
func fieldMatcher(field string, lo, hi int, names map[string]int) (func(int) bool, bool) {
	if field == "*" || field == "?" {
		return nil, true
	}
	if strings.ContainsAny(field, "LW#") {
		return nil, false
	}
	num := func(s string) (int, bool) {
		if v, ok := names[strings.ToUpper(s)]; ok {
			return v, true
		}
		n, err := strconv.Atoi(s)
		return n, err == nil && n >= lo && n <= hi
	}
	allowed := make([]bool, hi+1)
	for _, part := range strings.Split(field, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return nil, false
			}
			step = n
		}
		from, to := lo, hi
		switch a, b, isRange := strings.Cut(rng, "-"); {
		case rng == "*":
		case isRange:
			var ok1, ok2 bool
			from, ok1 = num(a)
			to, ok2 = num(b)
			if !ok1 || !ok2 || from > to {
				return nil, false
			}
		default:
			var ok bool
			if from, ok = num(rng); !ok {
				return nil, false
			}
			if !hasStep {
				to = from
			}
		}
		for v := from; v <= to; v += step {
			allowed[v] = true
		}
	}
	return func(v int) bool { return v >= 0 && v < len(allowed) && allowed[v] }, true
}

// Validate reports whether a window parses.
func Validate(w flotilla.MaintenanceWindow) error {
	_, err := Parse(w)
	return err
}

// ParseZone accepts an offset such as "+02:00" or an IANA name such as
// "Europe/Berlin"; empty means UTC.
func ParseZone(z string) (*time.Location, error) {
	z = strings.TrimSpace(z)
	if z == "" || z == "Z" || z == "UTC" {
		return time.UTC, nil
	}
	if m := offsetRE.FindStringSubmatch(z); m != nil {
		h, _ := strconv.Atoi(m[2])
		mi, _ := strconv.Atoi(m[3])
		if h > 14 || mi > 59 {
			return nil, flotilla.Errorf(flotilla.EInvalid, "maintenance window timezone %q is out of range", z)
		}
		off := h*3600 + mi*60
		if m[1] == "-" {
			off = -off
		}
		return time.FixedZone(z, off), nil
	}
	loc, err := time.LoadLocation(z)
	if err != nil {
		return nil, flotilla.Errorf(flotilla.EInvalid, "maintenance window timezone %q is invalid: use an offset such as +02:00 or an IANA name such as Europe/Berlin", z)
	}
	return loc, nil
}

// next returns the first window start strictly after t. The cron library
// rolls a day that a month lacks into the next month (February 30th fires
// on March 2nd), so each fire time is checked against the day-of-month and
// month fields and skipped when it does not match.
func (w *Window) next(t time.Time) (time.Time, bool) {
	for i := 0; i < maxSkips; i++ {
		n, err := w.cron.NextFireTime(t.UnixNano())
		if err != nil {
			return time.Time{}, false
		}
		at := time.Unix(0, n)
		local := at.In(w.loc)
		if (w.day == nil || w.day(local.Day())) && (w.month == nil || w.month(int(local.Month()))) {
			return at, true
		}
		t = at
	}
	return time.Time{}, false
}

// maxSkips bounds the fire times next passes over: February 29th comes
// after at most a few hundred non-matching days, an impossible date never.
const maxSkips = 2000

// Horizon is how far ahead a schedule must have a window to be accepted.
const Horizon = 5 * 365 * 24 * time.Hour

// OpensWithin reports whether a window is open at now or starts within d.
func (w *Window) OpensWithin(now time.Time, d time.Duration) bool {
	if w.Available(now) {
		return true
	}
	s, ok := w.next(now)
	return ok && !s.After(now.Add(d))
}

// Available reports whether now falls inside a window: some start s with
// s <= now < s+duration.
func (w *Window) Available(now time.Time) bool {
	s, ok := w.next(now.Add(-w.duration))
	return ok && !s.After(now)
}

// NextStart returns the next window start after now.
func (w *Window) NextStart(now time.Time) (time.Time, bool) {
	return w.next(now)
}

// CurrentEnd returns when the window now is in ends.
func (w *Window) CurrentEnd(now time.Time) (time.Time, bool) {
	s, ok := w.next(now.Add(-w.duration))
	if !ok || s.After(now) {
		return time.Time{}, false
	}
	return s.Add(w.duration), true
}

// Lapsed reports whether the schedule has no window left: none open now and
// none to come.
func (w *Window) Lapsed(now time.Time) bool {
	if w.Available(now) {
		return false
	}
	_, ok := w.next(now)
	return !ok
}

// NextChange returns when Available(now) next changes value, for callers
// that cache answers; ok is false when it never changes again.
func (w *Window) NextChange(now time.Time) (time.Time, bool) {
	if end, ok := w.CurrentEnd(now); ok {
		return end, true
	}
	return w.next(now)
}

// Backoff holds hawkBit's parameters for polling faster ahead of a window.
type Backoff struct {
	Polling    time.Duration // the normal polling time (default 5m)
	MinPolling time.Duration // never poll faster than this (default 30s)
	PollCount  int           // polls wanted between now and the start (default 3)
}

// DefaultBackoff is hawkBit's default.
var DefaultBackoff = Backoff{Polling: 5 * time.Minute, MinPolling: 30 * time.Second, PollCount: 3}

// PollingSleep is the inverse exponential back-off: with untilStart left
// before a window opens, poll PollCount times in that span, but never more
// often than MinPolling nor less often than Polling. Once the window has
// started (untilStart <= 0) polling returns to normal.
func (b Backoff) PollingSleep(untilStart time.Duration) time.Duration {
	if untilStart <= 0 || b.PollCount <= 0 {
		return b.Polling
	}
	secs := math.Round(untilStart.Seconds() / float64(b.PollCount))
	d := time.Duration(secs) * time.Second
	if d < b.MinPolling {
		d = b.MinPolling
	}
	if d > b.Polling {
		d = b.Polling
	}
	return d
}

// String renders the window for messages.
func (w *Window) String() string {
	return fmt.Sprintf("%q for %s (%s)", w.spec.Schedule, w.spec.Duration, w.loc)
}
