package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client speaks the push protocol to one node.
type Client struct {
	Base  string // e.g. http://10.0.1.134:8080
	Token string
	HTTP  *http.Client
}

// NodeError is a refusal from a node; Current names the update it is busy
// with, when it said.
type NodeError struct {
	Status  int
	Code    string
	Message string
	Current string
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("node answered %d: %s", e.Status, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, hdr http.Header, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, body)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		json.Unmarshal(b, &eb)
		msg := eb.Error.Message
		if msg == "" {
			msg = strings.TrimSpace(string(b))
		}
		return &NodeError{Status: resp.StatusCode, Code: eb.Error.Code, Message: msg, Current: eb.Current}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Start offers an update; the node answers once it accepted it.
func (c *Client) Start(ctx context.Context, r StartRequest) (Status, error) {
	b, _ := json.Marshal(r)
	var st Status
	err := c.do(ctx, http.MethodPost, PathUpdate, bytes.NewReader(b), http.Header{"Content-Type": {"application/json"}}, &st)
	return st, err
}

// Status asks the node where it stands.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, PathStatus, nil, nil, &st)
	return st, err
}

// Info asks the node for its version and labels.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var in Info
	err := c.do(ctx, http.MethodGet, PathInfo, nil, nil, &in)
	return in, err
}

// SendPayload streams body, which starts at offset of total bytes.
func (c *Client) SendPayload(ctx context.Context, id string, body io.Reader, offset, total int64) (Status, error) {
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	if total > 0 {
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, total-1, total))
	}
	var st Status
	err := c.do(ctx, http.MethodPut, PayloadPath(id), body, hdr, &st)
	return st, err
}

// Abort asks the node to abort update id; it refuses other ids.
func (c *Client) Abort(ctx context.Context, id string) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodPost, AbortPath(id), nil, nil, &st)
	return st, err
}
