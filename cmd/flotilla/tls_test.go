package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64 = 100

func newTestCA(t *testing.T, name string) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM certificate and key for cn: a server certificate for
// 127.0.0.1, or a client certificate.
func (ca *testCA) issue(t *testing.T, cn string, client bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTLSAndDeviceCertificates: `flotilla server --tls-cert --tls-key
// --client-ca` serves HTTPS; a device authenticates with a certificate
// whose common name is its id (the agent with --cert/--key/--ca), an
// untrusted certificate falls back to the token, and a renewed server
// certificate is served after SIGHUP.
func TestTLSAndDeviceCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t, "fleet CA"), newTestCA(t, "someone else")
	srvCert, srvKey := ca.issue(t, "ota-1", false)
	certFile, keyFile := writeFile(t, dir, "server.pem", srvCert), writeFile(t, dir, "server.key", srvKey)
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	p := startServerProcEnv(t, t.TempDir(), nil, "--tls-cert", certFile, "--tls-key", keyFile, "--client-ca", caFile, "--poll-interval", "1s")
	if !strings.HasPrefix(p.URL, "https://") {
		t.Fatalf("server listens on %s", p.URL)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	client := func(certPEM, keyPEM []byte) *http.Client {
		cfg := &tls.Config{RootCAs: roots}
		if certPEM != nil {
			c, _ := tls.X509KeyPair(certPEM, keyPEM)
			cfg.Certificates = []tls.Certificate{c}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	admin := &servertest.API{T: t, Base: p.URL, Token: adminSecret}
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	defer func() { http.DefaultTransport.(*http.Transport).TLSClientConfig = nil }()
	tok := admin.CreateDevice("dev-tls", nil)
	admin.CreateDevice("dev-other", nil)

	poll := func(c *http.Client, device, auth string) int {
		req, _ := http.NewRequest("GET", p.URL+"/default/controller/v1/"+device, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("poll %s: %v", device, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	devCert, devKey := ca.issue(t, "dev-tls", true)
	if code := poll(client(devCert, devKey), "dev-tls", ""); code != 200 {
		t.Fatalf("poll with the device's certificate and no token = %d", code)
	}
	if code := poll(client(devCert, devKey), "dev-other", ""); code != 401 {
		t.Fatalf("dev-tls's certificate for another device = %d", code)
	}
	badCert, badKey := other.issue(t, "dev-tls", true)
	if code := poll(client(badCert, badKey), "dev-tls", ""); code != 401 {
		t.Fatalf("untrusted certificate without a token = %d", code)
	}
	if code := poll(client(badCert, badKey), "dev-tls", "TargetToken "+tok); code != 200 {
		t.Fatalf("untrusted certificate with the token = %d (must fall back)", code)
	}

	// The agent with --cert/--key/--ca, no token.
	agentCert := writeFile(t, dir, "dev.pem", devCert)
	agentKey := writeFile(t, dir, "dev.key", devKey)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent := exec.CommandContext(ctx, flotillaBinary(t), "agent", "--server", p.URL, "--device-id", "dev-tls", "--cert", agentCert, "--key", agentKey,
		"--ca", caFile, "--first-check", "0s", "--target", filepath.Join(dir, "app"), "--state-dir", filepath.Join(dir, "agent"), "--current-version", "1.0.0")
	var alog testtool.SyncBuffer
	agent.Stdout, agent.Stderr = &alog, &alog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer agent.Wait()
	servertest.Eventually(t, 20*time.Second, func() error {
		var d struct{ Status, Version string }
		admin.Must(200, "GET", "/api/v1/devices/dev-tls", nil, &d)
		if d.Status != "online" || d.Version != "1.0.0" {
			return fmt.Errorf("device %+v; agent: %s", d, alog.String())
		}
		return nil
	})
	cancel()

	// A renewed certificate is served after SIGHUP, without a restart.
	serialOf := func() string {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(p.URL, "https://"), &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := serialOf(); cn != "ota-1" {
		t.Fatalf("served certificate %q", cn)
	}
	newCert, newKey := ca.issue(t, "ota-2", false)
	writeFile(t, dir, "server.key", newKey)
	writeFile(t, dir, "server.pem", newCert)
	p.cmd.Process.Signal(syscall.SIGHUP)
	servertest.Eventually(t, 10*time.Second, func() error {
		if cn := serialOf(); cn != "ota-2" {
			return fmt.Errorf("still serving %q", cn)
		}
		return nil
	})
}

// TestTrustedProxyCertificateHeaders: behind a TLS-terminating proxy the
// server accepts hawkBit's client-certificate headers — from the trusted
// proxy only, with an issuer the tenant accepts.
func TestTrustedProxyCertificateHeaders(t *testing.T) {
	poll := func(s *servertest.Server, headers map[string]string) int {
		req, _ := http.NewRequest("GET", s.URL+"/default/controller/v1/dev-1", nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	proxied := map[string]string{"X-Ssl-Client-Cn": "dev-1", "X-Ssl-Issuer-Hash-1": "AE:11:F5:6A"}
	behind := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} }))
	behind.API.CreateDevice("dev-1", nil)
	if code := poll(behind, proxied); code != 401 {
		t.Fatalf("certificate headers before the tenant allows them = %d", code)
	}
	behind.API.Must(200, "PATCH", "/api/v1/tenants/default", map[string]any{"settings": map[string]any{"header_auth": true, "header_authority": "00:11;ae:11:f5:6a"}}, nil)
	if code := poll(behind, proxied); code != 200 {
		t.Fatalf("certificate headers from the trusted proxy = %d", code)
	}
	if code := poll(behind, map[string]string{"X-Controller-Id": "dev-1", "X-Authority-1": "ae:11:f5:6a"}); code != 200 {
		t.Fatalf("X-Controller-Id / X-Authority-1 from the trusted proxy = %d", code)
	}
	if code := poll(behind, map[string]string{"X-Ssl-Client-Cn": "dev-1", "X-Ssl-Issuer-Hash-1": "ff:ff"}); code != 401 {
		t.Fatalf("an issuer the tenant does not accept = %d", code)
	}
	if code := poll(behind, map[string]string{"X-Ssl-Client-Cn": "dev-2", "X-Ssl-Issuer-Hash-1": "ae:11:f5:6a"}); code != 401 {
		t.Fatalf("a certificate for an unknown device = %d", code)
	}
	// Without --trusted-proxy the same headers are anyone's and count for
	// nothing.
	direct := servertest.Start(t)
	direct.API.CreateDevice("dev-1", nil)
	direct.API.Must(200, "PATCH", "/api/v1/tenants/default", map[string]any{"settings": map[string]any{"header_auth": true, "header_authority": "ae:11:f5:6a"}}, nil)
	if code := poll(direct, proxied); code != 401 {
		t.Fatalf("certificate headers from an untrusted address = %d", code)
	}
}
