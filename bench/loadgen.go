package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what a load run measured.
type loadResult struct {
	Requests int64
	Errors   int64
	Elapsed  time.Duration
	// FirstError is the first unexpected answer, for diagnosis.
	FirstError string
}

func (r loadResult) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// load drives addr with conns keep-alive connections for dur, each sending
// requests from reqs round-robin (connection i starts at i) and reading
// every response whole. It is a lean HTTP/1.1 client — raw requests, a
// minimal response parser — so that the server, not the client, is what is
// measured; both a baseline and Flotilla are driven by the same code.
func load(addr string, conns int, dur time.Duration, reqs [][]byte, wantStatus int) loadResult {
	return loadN(addr, conns, dur, reqs, wantStatus, false)
}

// loadOnce sends every request of reqs exactly once.
func loadOnce(addr string, conns int, reqs [][]byte, wantStatus int) loadResult {
	return loadN(addr, conns, time.Hour, reqs, wantStatus, true)
}

func loadN(addr string, conns int, dur time.Duration, reqs [][]byte, wantStatus int, once bool) loadResult {
	var total, errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			next := c
			for time.Now().Before(deadline) && !(once && next >= len(reqs)) {
				if conn == nil {
					var err error
					if conn, err = net.Dial("tcp", addr); err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						time.Sleep(10 * time.Millisecond)
						continue
					}
					br = bufio.NewReaderSize(conn, 64<<10)
				}
				// A batch between deadline checks keeps time.Now out of
				// the loop's cost.
				for k := 0; k < 64 && !(once && next >= len(reqs)); k++ {
					req := reqs[next%len(reqs)]
					next += conns
					if _, err := conn.Write(req); err != nil {
						conn.Close()
						conn = nil
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						break
					}
					status, err := readResponse(br)
					if err != nil {
						conn.Close()
						conn = nil
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						break
					}
					if status != wantStatus {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d for %q", status, bytes.SplitN(req, []byte("\r\n"), 2)[0]))
						continue
					}
					total.Add(1)
				}
			}
			if conn != nil {
				conn.Close()
			}
		}()
	}
	wg.Wait()
	r := loadResult{Requests: total.Load(), Errors: errs.Load(), Elapsed: time.Since(start)}
	if v := firstErr.Load(); v != nil {
		r.FirstError = v.(string)
	}
	return r
}

// readResponse reads one response with a Content-Length body and returns
// its status.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := int64(0)
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 16 && (h[0] == 'C' || h[0] == 'c') && bytes.EqualFold(h[:15], []byte("Content-Length:")) {
			length, err = strconv.ParseInt(string(bytes.TrimSpace(h[15:])), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", h)
			}
		}
	}
	if _, err := io.CopyN(io.Discard, br, length); err != nil {
		return 0, err
	}
	return status, nil
}

// getRequest renders a keep-alive GET.
func getRequest(host, path string, headers ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	return b.Bytes()
}
