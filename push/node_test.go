package push_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/push"
)

func newNode(t *testing.T, dir string, install push.InstallerFunc) (*push.Node, *push.Client, func()) {
	t.Helper()
	n, err := push.NewNode(push.NodeConfig{StateDir: dir, Version: "1.0.0", Installer: install, Logger: slog.New(slog.DiscardHandler), Token: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n)
	return n, &push.Client{Base: srv.URL, Token: "secret"}, srv.Close
}

func artifact(b []byte) push.Artifact {
	sum := sha256.Sum256(b)
	return push.Artifact{Name: "fw", Version: "2.0.0", Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

func waitState(t *testing.T, c *push.Client, want string) push.Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("node state %s (%v), want %s", st.State, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const id1, id2 = "6f1c2d4e-0000-4000-8000-000000000001", "6f1c2d4e-0000-4000-8000-000000000002"

func TestNodeProtocol(t *testing.T) {
	ctx := context.Background()
	var installed []byte
	n, c, stop := newNode(t, t.TempDir(), func(_ context.Context, a push.Artifact, p string) error {
		installed, _ = os.ReadFile(p)
		return nil
	})
	defer stop()
	payload := bytes.Repeat([]byte("firmware"), 10000)
	a := artifact(payload)
	if _, err := c.Start(ctx, push.StartRequest{ID: id1, Artifact: a}); err != nil {
		t.Fatal(err)
	}
	// The same id again is idempotent; a different one is refused, naming
	// the current update.
	if _, err := c.Start(ctx, push.StartRequest{ID: id1, Artifact: a}); err != nil {
		t.Fatalf("repeated start: %v", err)
	}
	_, err := c.Start(ctx, push.StartRequest{ID: id2, Artifact: a})
	var ne *push.NodeError
	if !errors.As(err, &ne) || ne.Status != 409 || ne.Current != id1 {
		t.Fatalf("second update while busy: %v", err)
	}
	// Half the bytes, then a resume from the wrong offset (416), then the rest.
	if _, err := c.SendPayload(ctx, id1, bytes.NewReader(payload[:30000]), 0, a.Size); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendPayload(ctx, id1, bytes.NewReader(payload[100:]), 100, a.Size); !errors.As(err, &ne) || ne.Status != 416 {
		t.Fatalf("resume from the wrong offset: %v", err)
	}
	st, _ := c.Status(ctx)
	if st.BytesReceived != 30000 || st.State != push.StateReceiving {
		t.Fatalf("status mid-way = %+v", st)
	}
	if _, err := c.SendPayload(ctx, id1, bytes.NewReader(payload[30000:]), 30000, a.Size); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, c, push.StateComplete)
	if st.Version != "2.0.0" || !bytes.Equal(installed, payload) {
		t.Fatalf("complete = %+v, installed %d bytes", st, len(installed))
	}
	if acc := n.Accepted(); len(acc) != 1 || acc[0] != id1 {
		t.Fatalf("accepted = %v", acc)
	}
	// Unauthenticated calls are refused.
	if _, err := (&push.Client{Base: c.Base}).Status(ctx); !errors.As(err, &ne) || ne.Status != 401 {
		t.Fatalf("no token: %v", err)
	}
}

func TestNodeAbortAndChecksum(t *testing.T) {
	ctx := context.Background()
	installs := 0
	_, c, stop := newNode(t, t.TempDir(), func(context.Context, push.Artifact, string) error { installs++; return nil })
	defer stop()
	payload := []byte("some firmware bytes")
	a := artifact(payload)
	c.Start(ctx, push.StartRequest{ID: id1, Artifact: a})
	if _, err := c.Abort(ctx, id2); err == nil {
		t.Fatal("abort with a wrong id succeeded")
	}
	if st, err := c.Abort(ctx, id1); err != nil || st.State != push.StateAborted || st.Version != "1.0.0" {
		t.Fatalf("abort = %+v, %v", st, err)
	}
	if _, err := c.Start(ctx, push.StartRequest{ID: id1, Artifact: a}); err != nil {
		t.Fatalf("restarting the current (aborted) id should be idempotent: %v", err)
	}
	// A new update after the abort; its bytes are tampered.
	bad := a
	bad.SHA256 = hex.EncodeToString(make([]byte, 32))
	c.Start(ctx, push.StartRequest{ID: id2, Artifact: bad})
	c.SendPayload(ctx, id2, bytes.NewReader(payload), 0, a.Size)
	st := waitState(t, c, push.StateFailed)
	if installs != 0 || st.Version != "1.0.0" || st.Error == "" {
		t.Fatalf("tampered payload: %+v, installs %d", st, installs)
	}
}

func TestNodeSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, c, stop := newNode(t, dir, func(context.Context, push.Artifact, string) error { return nil })
	payload := bytes.Repeat([]byte("x"), 5000)
	a := artifact(payload)
	c.Start(ctx, push.StartRequest{ID: id1, Artifact: a})
	c.SendPayload(ctx, id1, bytes.NewReader(payload[:2000]), 0, a.Size)
	stop()
	// The node restarts and remembers the update and its bytes.
	n, c, stop := newNode(t, dir, func(context.Context, push.Artifact, string) error { return nil })
	defer stop()
	st, _ := c.Status(ctx)
	if st.ID != id1 || st.State != push.StateReceiving || st.BytesReceived != 2000 {
		t.Fatalf("after restart = %+v", st)
	}
	c.SendPayload(ctx, id1, bytes.NewReader(payload[2000:]), 2000, a.Size)
	waitState(t, c, push.StateComplete)
	if len(n.Accepted()) != 1 {
		t.Fatalf("accepted = %v", n.Accepted())
	}
}

func FuzzParseStart(f *testing.F) {
	f.Add([]byte(`{"id":"6f1c2d4e-0000-4000-8000-000000000001","artifact":{"name":"fw","version":"1","size":3,"sha256":"` + hex.EncodeToString(make([]byte, 32)) + `"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := push.ParseStart(b)
		if err == nil && !push.ValidID(r.ID) {
			t.Fatal("accepted a request without a UUID")
		}
	})
}
