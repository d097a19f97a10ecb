// Package maintenance decides when a device may install: recurring windows
// given as a Quartz cron schedule (with seconds, '?' and an optional year),
// a duration and a time zone, as hawkBit defines them; and how much sooner a
// device should poll as a window approaches.
//
// Everything here is pure: callers pass the time.
package maintenance

import (
	"errors"
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
	return &Window{spec: w, cron: ct, duration: d, loc: loc}, nil
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

// next returns the first window start strictly after t.
func (w *Window) next(t time.Time) (time.Time, bool) {
	n, err := w.cron.NextFireTime(t.UnixNano())
	if err != nil || errors.Is(err, quartz.ErrTriggerExpired) {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
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
