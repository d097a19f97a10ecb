package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/internal/wire"
)

// tlsFiles serves the certificate and key files the operator configured,
// re-reading them when they change (a renewed certificate needs no
// restart) or on SIGHUP, and the client CA for device certificates.
type tlsFiles struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	stamp   string    // the files' sizes and modification times at the last load
	checked time.Time // when the files were last looked at
}

func newTLSFiles(certFile, keyFile, caFile string, log *slog.Logger) (*tlsFiles, error) {
	f := &tlsFiles{certFile: certFile, keyFile: keyFile, caFile: caFile, log: log}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *tlsFiles) stampNow() string {
	var b strings.Builder
	for _, p := range []string{f.certFile, f.keyFile, f.caFile} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

// load reads the files; on error the previous certificate stays in use.
func (f *tlsFiles) load() error {
	stamp := f.stampNow()
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s / key %s: %w", f.certFile, f.keyFile, err)
	}
	var pool *x509.CertPool
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return fmt.Errorf("client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client CA %s holds no PEM certificate", f.caFile)
		}
	}
	f.mu.Lock()
	f.cert, f.pool, f.stamp, f.checked = &cert, pool, stamp, time.Now()
	f.mu.Unlock()
	return nil
}

// Reload re-reads the files now (SIGHUP).
func (f *tlsFiles) Reload() {
	if err := f.load(); err != nil {
		f.log.Error("TLS reload failed; serving the previous certificate", "err", err)
		return
	}
	f.log.Info("TLS certificate reloaded", "cert", f.certFile)
}

// current returns the certificate and pool, reloading them when the files
// changed (looked at most once a second).
func (f *tlsFiles) current() (*tls.Certificate, *x509.CertPool) {
	f.mu.Lock()
	check := time.Since(f.checked) > time.Second
	if check {
		f.checked = time.Now()
	}
	stale := check && f.stampNow() != f.stamp
	f.mu.Unlock()
	if stale {
		f.Reload()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert, f.pool
}

// config is the server's TLS configuration: TLS 1.2 or newer, and with a
// client CA, device certificates verified when offered (a device without
// one still authenticates with its token).
func (f *tlsFiles) config() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := f.current()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{*cert}
		if pool != nil {
			// Asked for, verified per request (verifiedClient): a device
			// with an untrusted certificate still reaches the server and
			// falls back to its token, instead of failing the handshake.
			c.ClientAuth = tls.RequestClientCert
		}
		return c, nil
	}
	return base
}

// verifiedClient checks a request's client certificate against the
// client CA and records the verified common name (wire.ClientCertCN).
func (f *tlsFiles) verifiedClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			_, pool := f.current()
			leaf := r.TLS.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range r.TLS.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if pool != nil {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
					r = wire.WithClientCert(r, leaf.Subject.CommonName)
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// trustProxies marks requests from trusted reverse proxies: their
// X-Forwarded-For names the client (rate limits apply to it), and their
// client-certificate headers may authenticate devices. Anyone else's such
// headers are ignored.
func trustProxies(trusted []netip.Prefix, next http.Handler) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		addr, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !isTrusted(addr) {
			next.ServeHTTP(w, r)
			return
		}
		// The client is the last address that is not a trusted proxy.
		client := addr.String()
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			client = a.String()
			if !isTrusted(a) {
				break
			}
		}
		next.ServeHTTP(w, wire.WithClientIP(r, client, true))
	})
}

// ParseTrustedProxies reads CIDRs (or single addresses).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: use a CIDR such as 10.0.0.0/8 or an address", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: use a CIDR such as 10.0.0.0/8", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
