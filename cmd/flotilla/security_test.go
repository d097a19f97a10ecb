package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

// The tests in this file each reproduce a finding of the security review
// (issue #13) and hold the fix in place.

// recordingNode is a push node that records the Authorization header of
// every request and accepts nothing.
type recordingNode struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

func newRecordingNode(t *testing.T) *recordingNode {
	n := &recordingNode{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.auth = append(n.auth, r.Header.Get("Authorization"))
		n.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"code":"unauthorized","message":"bad token"}}`)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *recordingNode) seen() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.auth...)
}

func scopedToken(t *testing.T, api *servertest.API, scopes ...string) string {
	t.Helper()
	var tok struct{ Token string }
	api.Must(201, "POST", "/api/v1/tokens", map[string]any{"name": "t", "scopes": scopes}, &tok)
	return tok.Token
}

// Finding 1: a server-wide node token went to any address a devices:write
// token registered, and dial errors mapped the server's network.
func TestNodeTokensArePerNodeAndAddressesNeedNodesWrite(t *testing.T) {
	s := servertest.Start(t)
	s.API.Upload("fw", "2.0.0", []byte("firmware"), "")
	writer := s.API.As(scopedToken(t, s.API, "devices:write"))
	a, b := newRecordingNode(t), newRecordingNode(t)

	// devices:write alone cannot say where the server sends updates.
	code, body := writer.Do("POST", "/api/v1/devices", map[string]any{"id": "rogue", "address": a.srv.URL})
	if code != 403 || !strings.Contains(string(body), "nodes:write") {
		t.Fatalf("register with an address and devices:write only = %d %s", code, body)
	}
	writer.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "plain"}, nil)
	if code, body := writer.Do("PATCH", "/api/v1/devices/plain", map[string]any{"address": a.srv.URL}); code != 403 {
		t.Fatalf("set an address with devices:write only = %d %s", code, body)
	}

	var na, nb struct {
		NodeToken string `json:"node_token"`
	}
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "node-a", "address": a.srv.URL}, &na)
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "plain-b"}, nil)
	s.API.Must(200, "PATCH", "/api/v1/devices/plain-b", map[string]any{"address": b.srv.URL}, &nb)
	if !strings.HasPrefix(na.NodeToken, "fnt_") || !strings.HasPrefix(nb.NodeToken, "fnt_") || na.NodeToken == nb.NodeToken {
		t.Fatalf("node tokens %q and %q: want two distinct fnt_ tokens", na.NodeToken, nb.NodeToken)
	}
	// The token is shown once: reading the device again does not show it.
	if got := s.API.Must(200, "GET", "/api/v1/devices/node-a", nil, nil); bytes.Contains(got, []byte(na.NodeToken)) {
		t.Fatal("GET shows the node token again")
	}
	for id := range map[string]bool{"node-a": true, "plain-b": true} {
		s.API.Do("POST", "/api/v1/devices/"+id+"/updates", map[string]any{"id": "1a2b3c4d-0000-4000-8000-00000000000" + id[len(id)-1:],
			"artifact": map[string]string{"name": "fw", "version": "2.0.0"}})
	}
	if got := a.seen(); len(got) == 0 || got[0] != "Bearer "+na.NodeToken {
		t.Fatalf("node a was sent %q, want its own token", got)
	}
	if got := b.seen(); len(got) == 0 || got[0] != "Bearer "+nb.NodeToken {
		t.Fatalf("node b was sent %q, want its own token", got)
	}
	// Rotation: the new token goes out, the old one no longer.
	var rot struct {
		NodeToken string `json:"node_token"`
	}
	if code, _ := writer.Do("POST", "/api/v1/devices/node-a/node-token", nil); code != 403 {
		t.Fatalf("rotate a node token with devices:write only = %d", code)
	}
	s.API.Must(200, "POST", "/api/v1/devices/node-a/node-token", nil, &rot)
	s.API.Do("POST", "/api/v1/devices/node-a/updates", map[string]any{"id": "1a2b3c4d-0000-4000-8000-0000000000aa",
		"artifact": map[string]string{"name": "fw", "version": "2.0.0"}})
	if got := a.seen(); got[len(got)-1] != "Bearer "+rot.NodeToken || rot.NodeToken == na.NodeToken {
		t.Fatalf("after rotation node a was sent %q", got[len(got)-1])
	}

	// A closed port and a port that hangs up read the same to an API
	// caller: "unreachable", no dial error text.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	s.API.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "gone", "address": closed.URL}, nil)
	code, body = s.API.Do("POST", "/api/v1/devices/gone/updates", map[string]any{"id": "1a2b3c4d-0000-4000-8000-0000000000bb",
		"artifact": map[string]string{"name": "fw", "version": "2.0.0"}})
	if code != 502 || !strings.Contains(string(body), "unreachable") || strings.Contains(string(body), "refused") || strings.Contains(string(body), "dial") {
		t.Fatalf("update to a closed port = %d %s", code, body)
	}

	// Node tokens are not stored in plain text.
	db, _ := os.ReadFile(filepath.Join(s.DataDir, "flotilla.db"))
	wal, _ := os.ReadFile(filepath.Join(s.DataDir, "flotilla.db-wal"))
	for _, tok := range []string{na.NodeToken, nb.NodeToken, rot.NodeToken} {
		if bytes.Contains(db, []byte(tok)) || bytes.Contains(wal, []byte(tok)) {
			t.Fatalf("node token %s is in the database file in plain text", tok[:8])
		}
	}
}

// Finding 2: `flotilla agent --listen` without --listen-token installed
// whatever anyone sent.
func TestAgentListenRefusesToStartWithoutAToken(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(flotillaBinary(t), "agent", "--listen", "127.0.0.1:0", "--device-id", "n1", "--target", dir+"/t", "--state-dir", dir+"/s")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "--listen-token") {
		t.Fatalf("agent --listen without a token: exit %d (%v)\n%s", code, err, out)
	}
	// --insecure-no-auth starts, and says what it means.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd = exec.CommandContext(ctx, flotillaBinary(t), "agent", "--listen", "127.0.0.1:0", "--insecure-no-auth", "--device-id", "n1",
		"--target", dir+"/t", "--state-dir", dir+"/s")
	var log testtool.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	servertest.Eventually(t, 15*time.Second, func() error {
		if !strings.Contains(log.String(), "anyone who reaches it can install software") {
			return fmt.Errorf("no warning yet: %s", log.String())
		}
		return nil
	})
}

// Finding 3: self-registered devices' tokens were stored in plain text and
// shown to any devices:read token, which could then act as the device.
func TestDeviceTokensReachOnlyDevicesTokensHolders(t *testing.T) {
	s := servertest.Start(t)
	gw := s.API.GatewayToken()
	poll := func(id, auth string) int {
		req, _ := http.NewRequest("GET", s.URL+"/default/controller/v1/"+id, nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := poll("self-1", "GatewayToken "+gw); code != 200 {
		t.Fatalf("self-registration poll = %d", code)
	}
	reader := s.API.As(scopedToken(t, s.API, "devices:read"))
	for _, path := range []string{"/api/v1/devices/self-1", "/api/v1/devices"} {
		if body := reader.Must(200, "GET", path, nil, nil); bytes.Contains(body, []byte(`"token"`)) {
			t.Fatalf("devices:read sees a token at %s: %s", path, body)
		}
	}
	var d struct{ Token string }
	s.API.As(scopedToken(t, s.API, "devices:read", "devices:tokens")).Must(200, "GET", "/api/v1/devices/self-1", nil, &d)
	if !strings.HasPrefix(d.Token, "fdt_") || poll("self-1", "TargetToken "+d.Token) != 200 {
		t.Fatalf("devices:tokens holder got token %q", d.Token)
	}
	// Neither that token nor a pre-registered device's is in the database
	// file; the file and the secret key are readable by the owner only.
	pre := s.API.CreateDevice("pre-1", nil)
	s.Srv.Core.FlushSeen(context.Background())
	for _, f := range []string{"flotilla.db", "secret.key", "admin-token"} {
		st, err := os.Stat(filepath.Join(s.DataDir, f))
		if f != "flotilla.db" && os.IsNotExist(err) {
			continue // a test server is given its admin token and key (internal/secret tests the key file)
		}
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v; want 0600", f, st.Mode().Perm())
		}
	}
	db, _ := os.ReadFile(filepath.Join(s.DataDir, "flotilla.db"))
	wal, _ := os.ReadFile(filepath.Join(s.DataDir, "flotilla.db-wal"))
	for _, tok := range []string{d.Token, pre} {
		if bytes.Contains(db, []byte(tok)) || bytes.Contains(wal, []byte(tok)) {
			t.Fatalf("device token %s… is in the database in plain text", tok[:8])
		}
	}
	// Rotation: the old token stops at once, the new one works.
	var rot struct{ Token string }
	if code, _ := reader.Do("POST", "/api/v1/devices/pre-1/token", nil); code != 403 {
		t.Fatalf("rotate with devices:read = %d", code)
	}
	if poll("pre-1", "TargetToken "+pre) != 200 {
		t.Fatal("pre-registered token does not work")
	}
	s.API.Must(200, "POST", "/api/v1/devices/pre-1/token", nil, &rot)
	if poll("pre-1", "TargetToken "+pre) != 401 || poll("pre-1", "TargetToken "+rot.Token) != 200 {
		t.Fatal("rotation: the old token still works or the new one does not")
	}
}

// Finding 4: turning anonymous DDI off took 10 minutes to bite, and an
// expired gateway token kept working for devices already seen.
func TestDeviceAuthCacheFollowsRevocationsExpiriesAndSettings(t *testing.T) {
	s := servertest.Start(t)
	poll := func(id, auth string) int {
		req, _ := http.NewRequest("GET", s.URL+"/default/controller/v1/"+id, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	s.API.Must(200, "PATCH", "/api/v1/tenants/default", map[string]any{"anonymous_ddi": true}, nil)
	if poll("anon-1", "") != 200 || poll("anon-1", "") != 200 {
		t.Fatal("anonymous polls refused while allowed")
	}
	s.API.Must(200, "PATCH", "/api/v1/tenants/default", map[string]any{"anonymous_ddi": false}, nil)
	if code := poll("anon-1", ""); code != 401 {
		t.Fatalf("anonymous poll right after the setting was turned off = %d", code)
	}

	exp := s.Clock().Now().Add(time.Hour)
	var gw struct{ Token string }
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"name": "gw", "scopes": []string{"gateway"}, "expires_at": exp}, &gw)
	if poll("gw-1", "GatewayToken "+gw.Token) != 200 || poll("gw-1", "GatewayToken "+gw.Token) != 200 {
		t.Fatal("gateway polls refused before expiry")
	}
	s.Clock().Advance(61 * time.Minute)
	if code := poll("gw-1", "GatewayToken "+gw.Token); code != 401 {
		t.Fatalf("poll with an expired gateway token (cached before) = %d", code)
	}
}

// Finding 5: a tokens:write token revoked the bootstrap admin token.
func TestPrivilegeNeverGrowsByDelegation(t *testing.T) {
	s := servertest.Start(t)
	tw := s.API.As(scopedToken(t, s.API, "tokens:write"))
	code, body := tw.Do("POST", "/api/v1/tokens", map[string]any{"name": "x", "scopes": []string{"devices:write"}})
	if code != 403 {
		t.Fatalf("tokens:write grants devices:write = %d %s", code, body)
	}
	var list struct {
		Items []struct{ ID, Name string }
	}
	s.API.Must(200, "GET", "/api/v1/tokens", nil, &list)
	var bootID, otherAdmin string
	for _, tk := range list.Items {
		if tk.Name == "bootstrap-admin" {
			bootID = tk.ID
		}
	}
	var adm struct{ ID string }
	s.API.Must(201, "POST", "/api/v1/tokens", map[string]any{"name": "ops", "scopes": []string{"admin"}}, &adm)
	otherAdmin = adm.ID
	for _, id := range []string{bootID, otherAdmin} {
		if code, body := tw.Do("DELETE", "/api/v1/tokens/"+id, nil); code != 403 {
			t.Fatalf("tokens:write revokes admin token %s = %d %s", id, code, body)
		}
	}
	if code, body := s.API.Do("DELETE", "/api/v1/tokens/"+bootID, nil); code != 403 || !strings.Contains(string(body), "FLOTILLA_ADMIN_TOKEN") {
		t.Fatalf("revoking the bootstrap admin token = %d %s", code, body)
	}
	if code, _ := s.API.Do("POST", "/api/v1/tokens", map[string]any{"name": "bootstrap-admin", "scopes": []string{"admin"}}); code != 400 {
		t.Fatalf("creating a token with the bootstrap name = %d", code)
	}
	// What a token may grant it may revoke.
	s.API.Must(204, "DELETE", "/api/v1/tokens/"+otherAdmin, nil, nil)
	s.API.Must(200, "GET", "/api/v1/tokens", nil, nil)
}

// Finding 6: unbounded deployment history (100 feedbacks of 410 KB each).
func TestStatusQuotas(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.Quotas.StatusEntries = 5 }))
	tok := s.API.CreateDevice("dev-1", nil)
	s.API.Upload("fw", "2.0.0", []byte("fw"), "")
	d := s.API.Assign("dev-1", "fw", "2.0.0", nil)
	feedback := func(details []string, exec, fin string) (int, []byte) {
		body := map[string]any{"id": fmt.Sprint(d.ID), "status": map[string]any{"execution": exec, "result": map[string]any{"finished": fin}, "details": details}}
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/default/controller/v1/dev-1/deploymentBase/%d/feedback", s.URL, d.ID), jsonBody(body))
		req.Header.Set("Authorization", "TargetToken "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// Too many messages, or too long a message, in one status.
	if code, b := feedback(make([]string, 51), "proceeding", "none"); code != 429 || !strings.Contains(string(b), "messages_per_status") {
		t.Fatalf("51 messages = %d %s", code, b)
	}
	if code, b := feedback([]string{strings.Repeat("x", 1025)}, "proceeding", "none"); code != 413 || !strings.Contains(string(b), "message_bytes") {
		t.Fatalf("a 1025-byte message = %d %s", code, b)
	}
	for i := 0; i < 5; i++ {
		if code, b := feedback([]string{"step"}, "proceeding", "none"); code != 200 {
			t.Fatalf("status %d = %d %s", i, code, b)
		}
	}
	code, b := feedback([]string{"one more"}, "proceeding", "none")
	if code != 429 || !strings.Contains(string(b), "status_entries_per_deployment") {
		t.Fatalf("status past the quota = %d %s", code, b)
	}
	// A final status is always accepted: the device can finish.
	if code, b := feedback([]string{"done"}, "closed", "success"); code != 200 {
		t.Fatalf("final status past the quota = %d %s", code, b)
	}
	got := s.API.Deployment("dev-1", d.ID)
	n := 0
	for _, h := range got.History {
		if h.Source == "device" {
			n++
		}
	}
	if got.State != "succeeded" || n != 6 {
		t.Fatalf("deployment %s with %d device entries, want succeeded with 6", got.State, n)
	}
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// Finding 8: a gateway token registered devices without limit.
func TestRegistrationQuotas(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.Quotas.RegistrationsPerMinute = 60 // bursts of 10
		c.Quotas.DevicesPerTenant = 15
	}))
	gw := s.API.GatewayToken()
	poll := func(id string) *http.Response {
		req, _ := http.NewRequest("GET", s.URL+"/default/controller/v1/"+id, nil)
		req.Header.Set("Authorization", "GatewayToken "+gw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	registered := 0
	var limited *http.Response
	for i := 0; i < 30 && limited == nil; i++ {
		if resp := poll(fmt.Sprintf("gw-%02d", i)); resp.StatusCode == 429 {
			limited = resp
		} else if resp.StatusCode == 200 {
			registered++
		}
	}
	if limited == nil || limited.Header.Get("Retry-After") == "" || registered != 10 {
		t.Fatalf("registered %d before a 429 (%v)", registered, limited)
	}
	// Known devices keep polling.
	if poll("gw-00").StatusCode != 200 {
		t.Fatal("a registered device was refused")
	}
	// The tenant's device quota holds for the management API too.
	for i := 0; i < 5; i++ {
		s.API.CreateDevice(fmt.Sprintf("api-%d", i), nil)
	}
	code, body := s.API.Do("POST", "/api/v1/devices", map[string]any{"id": "one-too-many"})
	if code != 429 || !strings.Contains(string(body), "devices_per_tenant") {
		t.Fatalf("device past the tenant quota = %d %s", code, body)
	}
}

// Finding 9: no rate limit anywhere.
func TestRateLimits(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.DDIRate, c.DDIBurst = 5, 20
		c.AuthFailureRate, c.AuthFailureBurst = 1, 10
	}))
	tok := s.API.CreateDevice("dev-1", nil)
	get := func(auth string) *http.Response {
		req, _ := http.NewRequest("GET", s.URL+"/default/controller/v1/dev-1", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	ok := 0
	var last *http.Response
	for i := 0; i < 40; i++ {
		if last = get("TargetToken " + tok); last.StatusCode == 200 {
			ok++
		} else {
			break
		}
	}
	if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" || ok < 20 || ok > 22 {
		t.Fatalf("a device polling flat out: %d answered, then %d (Retry-After %q)", ok, last.StatusCode, last.Header.Get("Retry-After"))
	}
	// Failed logins from one address: ten are answered 401, then 429 —
	// even for a right token — until the budget refills.
	codes := map[int]int{}
	for i := 0; i < 15; i++ {
		code, _ := s.API.As("flt_wrong").Do("GET", "/api/v1/devices", nil)
		codes[code]++
	}
	if codes[401] != 10 || codes[429] != 5 {
		t.Fatalf("15 bad tokens answered %v, want 10×401 then 429", codes)
	}
	if code, _ := s.API.Do("GET", "/api/v1/devices", nil); code != 429 {
		t.Fatalf("a good token from a blocked address = %d, want 429", code)
	}
}

// Finding 10: no read timeout on request bodies.
func TestSlowBodiesAreCutOff(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.BodyReadTimeout = time.Second }))
	addr := strings.TrimPrefix(s.URL, "http://")
	const conns = 50
	done := make(chan time.Duration, conns)
	for i := 0; i < conns; i++ {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				done <- -1
				return
			}
			defer c.Close()
			start := time.Now()
			fmt.Fprintf(c, "POST /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", servertest.AdminToken)
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			io.Copy(io.Discard, c) // until the server answers and closes
			done <- time.Since(start)
		}()
	}
	for i := 0; i < conns; i++ {
		if d := <-done; d < 0 || d > 10*time.Second {
			t.Fatalf("a connection holding 1 byte of a 1000-byte body stayed open %v", d)
		}
	}
	// A steady upload keeps going for as long as it streams.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 6; i++ {
			pw.Write(bytes.Repeat([]byte{byte(i)}, 64<<10))
			time.Sleep(400 * time.Millisecond)
		}
		pw.Close()
	}()
	s.API.Must(201, "PUT", "/api/v1/artifacts/slow/1.0.0", pr, nil)
}

// Finding 11: no cap on event subscribers, and events leaked past the
// token's scopes.
func TestEventStreamsAreScopedAndCapped(t *testing.T) {
	s := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.EventStreamsPerToken = 2 }))
	reader := scopedToken(t, s.API, "devices:read")
	open := func(token, query string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", s.URL+"/api/v1/events"+query, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultClient.Do(req)
	}
	if resp, _ := open(reader, "?type=rollout"); resp.StatusCode != 403 {
		t.Fatalf("devices:read asking for rollout events = %d", resp.StatusCode)
	}
	resp, err := open(reader, "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// An artifact and a rollout (not for devices:read), then a device.
	s.API.Upload("fw", "1.0.0", []byte("fw"), "")
	s.API.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "r", "artifact": map[string]string{"name": "fw", "version": "1.0.0"}, "selector": "none=x", "allow_empty": true}, nil)
	s.API.CreateDevice("dev-1", nil)
	var seen []string
	timeout := time.After(10 * time.Second)
	for !strings.Contains(strings.Join(seen, "\n"), "device_registered") {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "data:") {
				seen = append(seen, l)
			}
		case <-timeout:
			t.Fatalf("no device event; got %v", seen)
		}
	}
	for _, l := range seen {
		if strings.Contains(l, "artifact_added") || strings.Contains(l, `"type":"rollout"`) || strings.Contains(l, `"type":"wave"`) {
			t.Fatalf("devices:read stream received %s", l)
		}
	}
	// A second stream fits, a third does not; another token is not held back.
	second, _ := open(reader, "")
	defer second.Body.Close()
	third, _ := open(reader, "")
	b, _ := io.ReadAll(third.Body)
	if third.StatusCode != 503 || !strings.Contains(string(b), "event streams open") {
		t.Fatalf("third stream of one token = %d %s", third.StatusCode, b)
	}
	other, _ := open(servertest.AdminToken, "")
	other.Body.Close()
	if other.StatusCode != 200 {
		t.Fatalf("another token's stream = %d", other.StatusCode)
	}
}
