package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/events"
)

// writeTimeout drops a client that cannot take a message within it, so a
// stalled client never holds anything up.
const writeTimeout = 10 * time.Second

// handleEvents streams events over a WebSocket, or as Server-Sent Events
// for "Accept: text/event-stream". Clients resume with ?since=SEQ (or
// Last-Event-ID); when the server no longer has every event since then, a
// snapshot message comes first, so there are no silent gaps.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if s.opts.Events == nil {
		s.error(w, r, flotilla.Errorf(flotilla.EUnavailable, "events are not enabled on this server"))
		return
	}
	allowed := eventTypesFor(p)
	if len(allowed) == 0 {
		s.error(w, r, flotilla.Errorf(flotilla.EForbidden, "events need a read scope: artifacts:read, devices:read or rollouts:read"))
		return
	}
	q := r.URL.Query()
	tenant, err := p.TenantFor(q.Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	f := events.Filter{Tenant: tenant, RolloutID: q.Get("rollout"), DeviceID: q.Get("device"), Types: allowed}
	// A subscriber sees exactly the events its scopes let it read over
	// REST; asking for others is refused, not silently empty.
	if t := q.Get("type"); t != "" {
		f.Types = strings.Split(t, ",")
		for _, typ := range f.Types {
			if need, ok := eventScope[typ]; ok && !slices.Contains(allowed, typ) {
				s.error(w, r, flotilla.Errorf(flotilla.EForbidden, "%s events need the %s scope", typ, need))
				return
			}
		}
	}
	release, err := s.subscribers.take(p.Token.ID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer release()
	if f.RolloutID != "" {
		if _, _, err := s.core.GetRollout(r.Context(), p, tenant, f.RolloutID); err != nil {
			s.error(w, r, err)
			return
		}
	}
	var since uint64
	if v := firstNonEmpty(q.Get("since"), r.Header.Get("Last-Event-ID")); v != "" {
		if since, err = strconv.ParseUint(v, 10, 64); err != nil {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "since must be an event sequence number, got %q", v))
			return
		}
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if !sse && !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "connect with a WebSocket, or send 'Accept: text/event-stream' for Server-Sent Events"))
		return
	}
	// Subscribe before taking the snapshot: an event may then arrive twice,
	// but none is missed.
	sub, resumed := s.opts.Events.Subscribe(f, since)
	defer sub.Close()
	var first []byte
	if since == 0 || !resumed {
		first, err = s.snapshot(r.Context(), p, tenant, f, s.opts.Events.Seq(), since != 0)
		if err != nil {
			s.error(w, r, err)
			return
		}
	}
	if sse {
		s.streamSSE(w, r, sub, first)
		return
	}
	s.streamWS(w, r, sub, first)
}

// eventScope is the scope that reads each event type over REST.
var eventScope = map[string]flotilla.Scope{
	events.TypeArtifactAdded: flotilla.ScopeArtifactsRead, events.TypeArtifactDeleted: flotilla.ScopeArtifactsRead,
	events.TypeDeviceRegistered: flotilla.ScopeDevicesRead, events.TypeDeviceUpdated: flotilla.ScopeDevicesRead,
	events.TypeDeviceDeleted: flotilla.ScopeDevicesRead, events.TypeDeviceOnline: flotilla.ScopeDevicesRead,
	events.TypeDeviceOffline: flotilla.ScopeDevicesRead, events.TypeDeployment: flotilla.ScopeDevicesRead,
	events.TypeNodeStatusUpdate: flotilla.ScopeDevicesRead,
	events.TypeRollout:          flotilla.ScopeRolloutsRead, events.TypeWave: flotilla.ScopeRolloutsRead,
	events.TypeRolloutProgress: flotilla.ScopeRolloutsRead,
}

// eventTypesFor lists the event types p may receive.
func eventTypesFor(p core.Principal) []string {
	var out []string
	for typ, sc := range eventScope {
		if p.Token.Has(sc) {
			out = append(out, typ)
		}
	}
	slices.Sort(out)
	return out
}

// subscriberLimits caps live event streams per token and per server, so
// that streams cannot take all of the server's memory or connections.
type subscriberLimits struct {
	perToken, total int
	mu              sync.Mutex
	byToken         map[string]int
	n               int
}

func (l *subscriberLimits) take(token string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.total {
		return nil, flotilla.Errorf(flotilla.EUnavailable, "the server has %d event streams open, its limit; try again later", l.n)
	}
	if l.byToken[token] >= l.perToken {
		return nil, flotilla.Errorf(flotilla.EUnavailable, "this token has %d event streams open, its limit; close one first", l.byToken[token])
	}
	l.n++
	l.byToken[token]++
	return func() {
		l.mu.Lock()
		l.n--
		if l.byToken[token]--; l.byToken[token] == 0 {
			delete(l.byToken, token)
		}
		l.mu.Unlock()
	}, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// snapshot is the state a client starts from: the rollouts it watches with
// per-wave counts, and for one rollout every device's state.
func (s *Server) snapshot(ctx context.Context, p core.Principal, tenant string, f events.Filter, seq uint64, gap bool) ([]byte, error) {
	snap := map[string]any{"type": events.TypeSnapshot, "seq": seq, "timestamp": s.core.Now().Format(time.RFC3339Nano), "resync": gap}
	if !p.Token.Has(flotilla.ScopeRolloutsRead) {
		return json.Marshal(snap)
	}
	var rollouts []api.Rollout
	if f.RolloutID != "" {
		ro, waves, err := s.core.GetRollout(ctx, p, tenant, f.RolloutID)
		if err != nil {
			return nil, err
		}
		rollouts = append(rollouts, toRolloutJSON(ro, waves))
		devs, err := s.core.RolloutDevices(ctx, p, tenant, f.RolloutID, flotilla.RolloutDeviceFilter{Limit: 100000})
		if err != nil {
			return nil, err
		}
		type dev struct {
			DeviceID string                   `json:"deviceId"`
			Wave     int                      `json:"wave"`
			State    flotilla.DeploymentState `json:"state"`
		}
		list := make([]dev, 0, len(devs))
		for _, d := range devs {
			list = append(list, dev{d.DeviceID, d.Wave, d.State})
		}
		snap["devices"] = list
	} else {
		for _, st := range []flotilla.RolloutStatus{flotilla.RolloutRunning, flotilla.RolloutPaused} {
			list, err := s.core.ListRollouts(ctx, p, tenant, flotilla.RolloutFilter{Status: st})
			if err != nil {
				return nil, err
			}
			for _, ro := range list {
				ro, waves, err := s.core.GetRollout(ctx, p, tenant, ro.ID)
				if err == nil {
					rollouts = append(rollouts, toRolloutJSON(ro, waves))
				}
			}
		}
	}
	if rollouts == nil {
		rollouts = []api.Rollout{}
	}
	snap["rollouts"] = rollouts
	return json.Marshal(snap)
}

func (s *Server) streamWS(w http.ResponseWriter, r *http.Request, sub *events.Sub, first []byte) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept wrote the error
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context())
	write := func(b []byte) error {
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		defer cancel()
		return c.Write(wctx, websocket.MessageText, b)
	}
	if first != nil {
		if err := write(first); err != nil {
			return
		}
	}
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	next := make(chan struct {
		evs []events.Event
		err error
	}, 1)
	go func() {
		for {
			evs, err := sub.Next(ctx)
			next <- struct {
				evs []events.Event
				err error
			}{evs, err}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		case n := <-next:
			var de *events.DroppedError
			if errors.As(n.err, &de) {
				code := websocket.StatusPolicyViolation
				if de.Reason == events.ReasonShutdown {
					code = websocket.StatusGoingAway
				}
				c.Close(code, truncate(de.Reason, 120))
				return
			}
			if n.err != nil {
				return
			}
			for _, e := range n.evs {
				if err := write(e.Data); err != nil {
					if errors.Is(err, context.DeadlineExceeded) {
						c.Close(websocket.StatusPolicyViolation, "too slow: a write took longer than "+writeTimeout.String())
					}
					return
				}
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *Server) streamSSE(w http.ResponseWriter, r *http.Request, sub *events.Sub, first []byte) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(id uint64, typ string, data []byte) error {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		var err error
		if id > 0 {
			_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, typ, data)
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
		}
		if err == nil {
			err = rc.Flush()
		}
		return err
	}
	if first != nil {
		if err := send(0, events.TypeSnapshot, first); err != nil {
			return
		}
	} else if err := rc.Flush(); err != nil {
		return
	}
	ctx := r.Context()
	for {
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		evs, err := sub.Next(hctx)
		cancel()
		var de *events.DroppedError
		switch {
		case errors.As(err, &de):
			send(0, "close", []byte(fmt.Sprintf(`{"type":"close","reason":%q}`, de.Reason)))
			return
		case ctx.Err() != nil:
			return
		case err != nil: // heartbeat keeps proxies from closing an idle stream
			rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			continue
		}
		for _, e := range evs {
			if err := send(e.Seq, e.Type, e.Data); err != nil {
				return
			}
		}
	}
}
