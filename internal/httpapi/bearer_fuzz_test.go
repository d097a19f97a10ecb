package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer flt_x", "bearer  flt_y ", "Basic abc", "", "Bearer", "TargetToken z"} {
		f.Add(s, "GET", "/api/v1/events", "tok")
	}
	f.Fuzz(func(t *testing.T, h, method, path, query string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path+query+method, " \r\n\t?#%") || method == "" {
			return
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Method, r.URL.Path, r.URL.RawQuery = method, path, "token="+query
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		got := bearer(r)
		if got != strings.TrimSpace(got) {
			t.Fatalf("untrimmed token %q", got)
		}
		// The query token counts only for a GET of the event stream.
		if h == "" && got != "" && (method != "GET" || path != "/api/v1/events") {
			t.Fatalf("?token= accepted on %s %s", method, path)
		}
	})
}
