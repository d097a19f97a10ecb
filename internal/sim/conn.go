package sim

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// doer sends one request: an *http.Client, or a connClient.
type doer interface {
	Do(*http.Request) (*http.Response, error)
}

// connClient sends the requests of a group of devices to the server, each
// over a keep-alive connection taken from the group's idle ones (or dialed)
// and written and read in the device's goroutine, then given back. A device
// sends one request at a time, so a group never holds more connections than
// devices, and in practice as many as it has requests in flight. Against
// net/http's Transport, whose two goroutines per connection and hand-offs
// between them on every request made a 10k-device fleet on the server's
// machine as costly as the server, the simulator needs about 40% less CPU.
// Requests to any other host go to other; HTTP_PROXY is not consulted for
// the server.
type connClient struct {
	scheme, host, addr string // the server's
	tls                *tls.Config
	other              doer

	// slots holds a token for each connection in use, a request's from
	// its start until its body is closed; nil: no bound.
	slots chan struct{}

	mu   sync.Mutex
	idle []*conn // the most recently used last
}

// requestTimeout bounds one request and its answer, as the http.Client
// used for other hosts does.
const requestTimeout = 5 * time.Minute

// conn is one connection to the server.
type conn struct {
	net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newConnClient(server string, other doer) (*connClient, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	c := &connClient{scheme: u.Scheme, host: u.Host, addr: net.JoinHostPort(u.Hostname(), port), other: other}
	switch u.Scheme {
	case "http":
	case "https":
		c.tls = &tls.Config{ServerName: u.Hostname()}
	default:
		return nil, errors.New("sim: the server URL must be http:// or https://")
	}
	return c, nil
}

// Do sends req. The response's body must be closed: that gives the
// connection back.
func (c *connClient) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != c.scheme || req.URL.Host != c.host {
		return c.other.Do(req)
	}
	if c.slots != nil {
		select {
		case c.slots <- struct{}{}:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	resp, err := c.do(req)
	if err != nil {
		c.release()
	}
	return resp, err
}

// release gives back a request's slot.
func (c *connClient) release() {
	if c.slots != nil {
		<-c.slots
	}
}

func (c *connClient) do(req *http.Request) (*http.Response, error) {
	cn := c.takeIdle()
	reused := cn != nil
	if !reused {
		var err error
		if cn, err = c.dial(req.Context()); err != nil {
			return nil, err
		}
	}
	resp, unanswered, err := c.roundTrip(cn, req)
	if err != nil && reused && unanswered && req.Context().Err() == nil && (req.Body == nil || req.GetBody != nil) {
		// The server closed the idle connection before it read the
		// request: retry once on a new one, as net/http does.
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		if cn, err = c.dial(req.Context()); err != nil {
			return nil, err
		}
		resp, _, err = c.roundTrip(cn, req)
	}
	return resp, err
}

func (c *connClient) takeIdle() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.idle)
	if n == 0 {
		return nil
	}
	cn := c.idle[n-1]
	c.idle[n-1] = nil
	c.idle = c.idle[:n-1]
	return cn
}

func (c *connClient) putIdle(cn *conn) {
	c.mu.Lock()
	c.idle = append(c.idle, cn)
	c.mu.Unlock()
}

// roundTrip sends req on cn; unanswered says the connection ended before
// the first byte of an answer.
func (c *connClient) roundTrip(cn *conn, req *http.Request) (resp *http.Response, unanswered bool, err error) {
	cn.SetDeadline(time.Now().Add(requestTimeout))
	stop := context.AfterFunc(req.Context(), func() { cn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error, unanswered bool) (*http.Response, bool, error) {
		stop()
		cn.Close()
		return nil, unanswered, err
	}
	if err := req.Write(cn.bw); err != nil {
		return fail(err, true)
	}
	if err := cn.bw.Flush(); err != nil {
		return fail(err, true)
	}
	if _, err := cn.br.Peek(1); err != nil {
		return fail(err, true)
	}
	resp, err = http.ReadResponse(cn.br, req)
	if err != nil {
		return fail(err, false)
	}
	resp.Body = &connBody{ReadCloser: resp.Body, c: c, cn: cn, stop: stop, close: resp.Close}
	return resp, false, nil
}

func (c *connClient) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	if c.tls != nil {
		tc := tls.Client(nc, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	return &conn{Conn: nc, br: bufio.NewReader(nc), bw: bufio.NewWriterSize(nc, 2048)}, nil
}

// connBody gives the connection back once the body was read to its end,
// and closes it otherwise.
type connBody struct {
	io.ReadCloser
	c     *connClient
	cn    *conn
	stop  func() bool
	close bool // the server said Connection: close
	done  bool
}

func (b *connBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	defer b.c.release()
	err := b.ReadCloser.Close() // reads what is left, so the next answer starts at its first byte
	if !b.stop() || err != nil || b.close {
		b.cn.Close()
		return err
	}
	b.c.putIdle(b.cn)
	return nil
}
