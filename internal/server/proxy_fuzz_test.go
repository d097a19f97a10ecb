package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/wire"
)

func FuzzTrustProxies(f *testing.F) {
	f.Add("203.0.113.7, 10.0.0.2", "10.0.0.1:5555")
	f.Add("garbage", "[::1]:1")
	f.Add("", "192.0.2.1:80")
	trusted, _ := ParseTrustedProxies([]string{"10.0.0.0/8", "::1"})
	f.Fuzz(func(t *testing.T, xff, remote string) {
		var ip string
		var viaProxy bool
		h := trustProxies(trusted, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ip, viaProxy = wire.ClientIP(r), wire.FromTrustedProxy(r)
		}))
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		h.ServeHTTP(httptest.NewRecorder(), r)
		if viaProxy {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				t.Fatalf("client %q from a trusted proxy is not an address", ip)
			}
			_ = a
		}
	})
}

func FuzzParseTrustedProxies(f *testing.F) {
	f.Add("10.0.0.0/8,::1")
	f.Fuzz(func(t *testing.T, s string) {
		ParseTrustedProxies([]string{s}) // must not panic
	})
}
