package core_test

import (
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/core"
)

func FuzzParseDeviceAuthorization(f *testing.F) {
	for _, s := range []string{"TargetToken abc", "GatewayToken  x ", "", "Bearer", " TargetToken\tx", strings.Repeat("a ", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		scheme, secret := core.ParseDeviceAuthorization(h)
		if secret != "" && scheme == "" {
			t.Fatalf("secret %q without a scheme from %q", secret, h)
		}
		if strings.ContainsAny(scheme, " ") || secret != strings.TrimSpace(secret) {
			t.Fatalf("untrimmed parts %q %q from %q", scheme, secret, h)
		}
		if len(h) > 1024 && (scheme != "" || secret != "") {
			t.Fatal("an over-long header was parsed")
		}
	})
}
