package updater

import (
	"net/url"
	"testing"
)

func TestSameOrigin(t *testing.T) {
	server, _ := url.Parse("https://ota.example.com")
	for _, tc := range []struct {
		link string
		same bool
	}{
		{"https://ota.example.com/default/controller/v1/x", true},
		{"https://OTA.example.com:443/x", true},
		{"https://ota.example.com.evil.net/x", false}, // the prefix match the review found
		{"https://ota.example.com:8443/x", false},
		{"http://ota.example.com/x", false},
		{"https://evil.net/?ota.example.com", false},
		{"https://bucket.s3.example.com/fw?X-Amz-Signature=1", false},
	} {
		u, _ := url.Parse(tc.link)
		if got := sameOrigin(u, server); got != tc.same {
			t.Errorf("sameOrigin(%s) = %v, want %v", tc.link, got, tc.same)
		}
	}
}
