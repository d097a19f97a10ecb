package server

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// Request bodies are read under deadlines so that a client cannot hold a
// connection (and a handler) by sending a body slowly: every read must
// bring bytes within BodyIdle, and past a grace period the body must keep
// up at least MinBodyRate on average. A large upload that streams keeps
// going; a trickle is cut off.
const (
	defaultBodyIdle  = 10 * time.Second
	bodyGrace        = 10 * time.Second
	minBodyRate      = 1024 // bytes per second, averaged
	bodyDeadlineSlop = time.Second
)

// guardBodies wraps every request body with the deadlines above.
func guardBodies(idle time.Duration, next http.Handler) http.Handler {
	if idle <= 0 {
		idle = defaultBodyIdle
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			start := time.Now()
			rc.SetReadDeadline(start.Add(idle))
			r.Body = &guardedBody{r: r.Body, rc: rc, idle: idle, start: start}
		}
		next.ServeHTTP(w, r)
	})
}

// errSlowBody ends a body that arrives too slowly.
var errSlowBody = errors.New("request body arrives too slowly")

type guardedBody struct {
	r     io.ReadCloser
	rc    *http.ResponseController
	idle  time.Duration
	start time.Time
	n     int64
}

func (b *guardedBody) Read(p []byte) (int, error) {
	now := time.Now()
	if el := now.Sub(b.start); el > bodyGrace && float64(b.n)/el.Seconds() < minBodyRate {
		return 0, errSlowBody
	}
	// The connection's read deadline moves with the body: at most idle
	// from now, and never past the time by which the average must hold.
	deadline := now.Add(b.idle)
	if must := b.start.Add(bodyGrace + time.Duration(float64(b.n+int64(len(p)))/minBodyRate*float64(time.Second))); must.Before(deadline) && must.After(now) {
		deadline = must.Add(bodyDeadlineSlop)
	}
	b.rc.SetReadDeadline(deadline)
	k, err := b.r.Read(p)
	b.n += int64(k)
	return k, err
}

func (b *guardedBody) Close() error { return b.r.Close() }
