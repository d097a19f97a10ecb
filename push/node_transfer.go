package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// fetch GETs the bytes from url itself, resuming with Range from what the
// node holds; on failure it hands over to the server (fetching false).
func (n *Node) fetch(ctx context.Context, id, url string) {
	n.writing.Lock()
	defer n.writing.Unlock()
	err := func() error {
		n.mu.Lock()
		st := n.st.Status
		n.mu.Unlock()
		if st.ID != id || st.State != StateReceiving {
			return nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if st.BytesReceived > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", st.BytesReceived))
		}
		resp, err := n.cfg.HTTPClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch {
		case st.BytesReceived > 0 && resp.StatusCode == http.StatusPartialContent:
		case st.BytesReceived == 0 && resp.StatusCode == http.StatusOK:
		default:
			return fmt.Errorf("GET answered %s", resp.Status)
		}
		var body io.Reader = resp.Body
		if n.cfg.MaxRate > 0 {
			body = &slowReader{r: body, rate: n.cfg.MaxRate, start: time.Now(), ctx: ctx}
		}
		_, err = n.receive(ctx, id, st.BytesReceived, body)
		return err
	}()
	// One step from "fetching" to "verifying": a status read in between
	// would show all bytes in, not fetching, and invite the server to send.
	n.mu.Lock()
	if n.st.ID == id && n.st.Fetching {
		n.st.Fetching = false
		if err != nil && n.st.State == StateReceiving {
			n.st.Error = "fetch: " + err.Error()
			n.log.Warn("push fetch failed; waiting for the server to send the bytes", "id", id, "err", err)
		}
		n.save()
	}
	done := n.received(id)
	n.mu.Unlock()
	if done {
		go n.install(id)
	}
}

// parseContentRange reads "bytes START-END/TOTAL" (or "bytes */TOTAL").
func parseContentRange(h string) (start, total int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q: want bytes START-END/TOTAL", h)
	}
	rng, tot, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q: want bytes START-END/TOTAL", h)
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("Content-Range %q: bad total", h)
	}
	s, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q: bad range", h)
	}
	if start, err = strconv.ParseInt(s, 10, 64); err != nil || start < 0 {
		return 0, 0, fmt.Errorf("Content-Range %q: bad start", h)
	}
	return start, total, nil
}

func (n *Node) handlePayload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n.writing.Lock()
	defer n.writing.Unlock()
	n.mu.Lock()
	st := n.st.Status
	n.mu.Unlock()
	if st.ID != id {
		writeErr(w, http.StatusConflict, "conflict", fmt.Sprintf("update %s is not the current update", id), st.ID)
		return
	}
	if st.State != StateReceiving {
		writeJSON(w, http.StatusOK, st) // bytes already complete: nothing to do
		return
	}
	start := int64(0)
	if h := r.Header.Get("Content-Range"); h != "" {
		var total int64
		var err error
		if start, total, err = parseContentRange(h); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", err.Error(), "")
			return
		}
		if total != st.Total {
			writeErr(w, http.StatusBadRequest, "invalid", fmt.Sprintf("total %d does not match the update's size %d", total, st.Total), "")
			return
		}
	}
	if start != st.BytesReceived {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", st.BytesReceived-1))
		writeErr(w, http.StatusRequestedRangeNotSatisfiable, "range", fmt.Sprintf("the node has %d bytes; send from there", st.BytesReceived), id)
		return
	}
	var body io.Reader = io.LimitReader(r.Body, st.Total-start)
	if n.cfg.MaxRate > 0 {
		body = &slowReader{r: body, rate: n.cfg.MaxRate, start: time.Now(), ctx: r.Context()}
	}
	aborted, err := n.receive(r.Context(), id, start, body)
	switch {
	case aborted:
		writeJSON(w, http.StatusConflict, n.Status())
		return
	case err != nil && errors.Is(err, errStorage):
		writeErr(w, http.StatusInternalServerError, "internal", err.Error(), "")
		return
	}
	n.completeIfReceived(id)
	writeJSON(w, http.StatusOK, n.Status())
}

var errStorage = errors.New("node storage")

// receive appends body to the payload file at offset start; the caller
// holds n.writing. aborted reports that the update stopped being the
// current one meanwhile. A body that ends early is not an error: the
// bytes so far count, and the rest can follow.
func (n *Node) receive(ctx context.Context, id string, start int64, body io.Reader) (aborted bool, err error) {
	f, err := os.OpenFile(n.payloadPath(), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errStorage, err)
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return false, fmt.Errorf("%w: %v", errStorage, err)
	}
	n.mu.Lock()
	total := n.st.Total
	n.mu.Unlock()
	body = io.LimitReader(body, total-start)
	buf := make([]byte, 64<<10)
	received := start
	var rerr error
	for ctx.Err() == nil {
		k, err := body.Read(buf)
		if k > 0 {
			if _, werr := f.Write(buf[:k]); werr != nil {
				rerr = fmt.Errorf("%w: %v", errStorage, werr)
				break
			}
			received += int64(k)
			n.mu.Lock()
			if n.st.ID != id || n.st.State != StateReceiving { // aborted meanwhile
				n.mu.Unlock()
				return true, nil
			}
			n.st.BytesReceived = received
			n.mu.Unlock()
		}
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	f.Sync()
	n.mu.Lock()
	n.save()
	n.mu.Unlock()
	if rerr == nil && ctx.Err() != nil {
		rerr = ctx.Err()
	}
	return false, rerr
}

// completeIfReceived moves an update whose bytes are all in to verifying
// and starts the install.
func (n *Node) completeIfReceived(id string) {
	n.mu.Lock()
	done := n.received(id)
	n.mu.Unlock()
	if done {
		go n.install(id)
	}
}

// received moves update id to verifying when all its bytes are in and
// reports whether it did; the caller holds n.mu and starts the install.
func (n *Node) received(id string) bool {
	if n.st.ID != id || n.st.State != StateReceiving || n.st.Fetching || n.st.BytesReceived != n.st.Total {
		return false
	}
	n.st.State, n.st.Error = StateVerifying, ""
	n.save()
	return true
}

// install verifies and applies the payload in the background.
func (n *Node) install(id string) {
	ctx, cancel := context.WithCancel(context.Background())
	n.mu.Lock()
	n.cancel = cancel
	a, target, running := n.st.Artifact, n.st.Target, n.st.Version
	n.mu.Unlock()
	defer cancel()
	fail := func(msg string) {
		n.mu.Lock()
		if n.st.ID == id {
			n.st.State, n.st.Error = StateFailed, msg
			n.save()
		}
		n.mu.Unlock()
		n.log.Warn("push update failed", "id", id, "err", msg)
	}
	f, err := os.Open(n.payloadPath())
	if err != nil {
		fail(err.Error())
		return
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		fail(err.Error())
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		fail(fmt.Sprintf("checksum mismatch: got %s, want %s", got, a.SHA256))
		return
	}
	if n.trust != nil {
		if err := n.checkSigned(ctx, target, running); err != nil {
			fail("signature check failed: " + err.Error())
			return
		}
	}
	n.mu.Lock()
	if n.st.ID != id || n.st.State != StateVerifying {
		n.mu.Unlock()
		return // aborted
	}
	n.st.State = StateApplying
	n.save()
	n.mu.Unlock()
	if err := n.cfg.Installer.Install(ctx, a, n.payloadPath()); err != nil {
		fail("install failed: " + err.Error())
		return
	}
	n.mu.Lock()
	if n.st.ID == id {
		n.st.State, n.st.Version, n.st.Error = StateComplete, a.Version, ""
		n.save()
	}
	n.mu.Unlock()
	os.Remove(n.payloadPath())
	n.log.Info("push update complete", "id", id, "version", a.Version)
}

func (n *Node) handleAbort(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.st.ID != id:
		writeErr(w, http.StatusConflict, "conflict", fmt.Sprintf("update %s is not the current update; nothing aborted", id), n.st.ID)
		return
	case n.st.State == StateAborted:
		writeJSON(w, http.StatusOK, n.st.Status)
		return
	case n.st.State == StateApplying || n.st.State == StateComplete || n.st.State == StateFailed:
		writeErr(w, http.StatusConflict, "conflict", fmt.Sprintf("update %s is %s and cannot be aborted", id, n.st.State), n.st.ID)
		return
	}
	n.st.State, n.st.Error = StateAborted, "aborted on request"
	if n.cancel != nil {
		n.cancel()
	}
	n.save()
	os.Remove(n.payloadPath())
	n.log.Info("push update aborted", "id", id)
	writeJSON(w, http.StatusOK, n.st.Status)
}

// slowReader paces reads to rate bytes per second.
type slowReader struct {
	r     io.Reader
	rate  int64
	start time.Time
	n     int64
	ctx   context.Context
}

func (s *slowReader) Read(p []byte) (int, error) {
	if max := int(s.rate / 20); max > 0 && len(p) > max {
		p = p[:max]
	}
	k, err := s.r.Read(p)
	s.n += int64(k)
	if ahead := time.Duration(float64(s.n)/float64(s.rate)*float64(time.Second)) - time.Since(s.start); ahead > 0 {
		select {
		case <-time.After(ahead):
		case <-s.ctx.Done():
			return k, s.ctx.Err()
		}
	}
	return k, err
}

// checkSigned verifies the received payload against the signed target,
// and refuses a downgrade the signature does not allow.
func (n *Node) checkSigned(ctx context.Context, target, running string) error {
	t, err := n.trust.Target(ctx, target)
	if err != nil {
		return err
	}
	if err := t.CheckVersion(running); err != nil {
		return err
	}
	return t.CheckFile(n.payloadPath())
}
