package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// proc is a flotilla command started through run() in this test process.
type proc struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	out    bytes.Buffer
	URL    string
}

var listenRE = regexp.MustCompile(`listening on\s+(http://\S+)`)

// testEnv builds a getenv from key=value pairs; nothing leaks in from the
// real environment except the Postgres DSN variable.
func testEnv(kv ...string) func(string) string {
	m := map[string]string{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

// start runs args and waits until the process prints its listen address.
func start(t *testing.T, getenv func(string) string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{t: t, cancel: cancel, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	stderr := &testWriter{t: t}
	go func() {
		err := run(ctx, args, getenv, pw, stderr)
		pw.Close()
		p.done <- err
	}()
	select {
	case p.URL = <-found:
	case err := <-p.done:
		t.Fatalf("flotilla %v exited before listening: %v\n%s", args, err, p.Output())
	case <-time.After(30 * time.Second):
		t.Fatalf("flotilla %v did not start listening", args)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// Output is what the process printed to stdout.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stop cancels the process's context and waits for run to return.
func (p *proc) Stop() error {
	p.cancel()
	select {
	case err, ok := <-p.done:
		if ok {
			close(p.done)
		}
		return err
	case <-time.After(30 * time.Second):
		p.t.Error("flotilla did not stop within 30s")
		return nil
	}
}

type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if os.Getenv("FLOTILLA_TEST_LOGS") != "" {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}
