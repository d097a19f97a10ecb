package deviceapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/deviceapi"
)

func FuzzProxyIssuers(f *testing.F) {
	f.Add("ae:11;BB,cc", "x")
	f.Add(";;,,", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{}
		h.Add("X-Ssl-Issuer-Hash-1", a)
		h.Add("X-Authority-2", b)
		for _, got := range deviceapi.ProxyIssuers(h) {
			if got == "" || got != strings.TrimSpace(got) || strings.ContainsAny(got, ";,") {
				t.Fatalf("issuer %q from %q %q", got, a, b)
			}
		}
	})
}
