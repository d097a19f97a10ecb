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
	"time"
)

// doer sends one request: an *http.Client, or a device's own connection.
type doer interface {
	Do(*http.Request) (*http.Response, error)
}

// connClient sends one device's requests to the server over a keep-alive
// connection of its own, written and read in the device's goroutine. That
// is what a device does — one request at a time — and it costs the
// simulator half as much per request as net/http's Transport, whose two
// goroutines per connection and the hand-offs between them per request
// made a 10k-device fleet on the server's machine as costly as the server.
// Requests to any other host go to other.
type connClient struct {
	scheme, host, addr string // the server's
	tls                *tls.Config
	other              doer
	timeout            time.Duration

	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
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
	c := &connClient{scheme: u.Scheme, host: u.Host, addr: net.JoinHostPort(u.Hostname(), port), other: other, timeout: 5 * time.Minute}
	switch u.Scheme {
	case "http":
	case "https":
		c.tls = &tls.Config{ServerName: u.Hostname()}
	default:
		return nil, errors.New("sim: the server URL must be http:// or https://")
	}
	return c, nil
}

// Do sends req. The response's body must be read or closed before the
// next request, as the device's requests follow one another.
func (c *connClient) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != c.scheme || req.URL.Host != c.host {
		return c.other.Do(req)
	}
	reused := c.conn != nil
	resp, unanswered, err := c.roundTrip(req)
	if err != nil && reused && unanswered && req.Context().Err() == nil && (req.Body == nil || req.GetBody != nil) {
		// The server closed the idle connection before it read the
		// request: retry once on a new one, as net/http does.
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		resp, _, err = c.roundTrip(req)
	}
	return resp, err
}

// roundTrip sends req on the connection, dialing one if there is none;
// unanswered says the connection ended before the first byte of an answer.
func (c *connClient) roundTrip(req *http.Request) (resp *http.Response, unanswered bool, err error) {
	ctx := req.Context()
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return nil, false, err
		}
	}
	conn := c.conn
	conn.SetDeadline(time.Now().Add(c.timeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error, unanswered bool) (*http.Response, bool, error) {
		stop()
		c.drop()
		return nil, unanswered, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(err, true)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err, true)
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(err, true)
	}
	resp, err = http.ReadResponse(c.br, req)
	if err != nil {
		return fail(err, false)
	}
	resp.Body = &connBody{ReadCloser: resp.Body, c: c, conn: conn, stop: stop, close: resp.Close}
	return resp, false, nil
}

func (c *connClient) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	c.conn, c.br, c.bw = conn, bufio.NewReader(conn), bufio.NewWriterSize(conn, 2048)
	return nil
}

func (c *connClient) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// connBody keeps the connection for the next request once the body was
// read to its end, and closes it otherwise.
type connBody struct {
	io.ReadCloser
	c     *connClient
	conn  net.Conn
	stop  func() bool
	close bool // the server said Connection: close
	done  bool
}

func (b *connBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.ReadCloser.Close() // reads what is left, so the next response starts at the right byte
	if !b.stop() || err != nil || b.close {
		if b.c.conn == b.conn {
			b.c.drop()
		}
	}
	return err
}
