package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "no such endpoint: %s %s (see /api/v1/openapi.json)", r.Method, r.URL.Path))
}

func writeJSON(w http.ResponseWriter, status int, v any) { wire.JSON(w, status, v) }

// page reads limit (default 100, at most 1000) and cursor.
func page(r *http.Request) (limit int, cursor string, err error) {
	limit = 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, "", flotilla.Errorf(flotilla.EInvalid, "limit must be an integer from 1 to 1000, got %q", v)
		}
		limit = n
	}
	return limit, r.URL.Query().Get("cursor"), nil
}

func timePtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// tenantOf is the tenant a request addresses: the body's, else the query's.
func tenantOf(body string, r *http.Request) string {
	if body != "" {
		return body
	}
	return r.URL.Query().Get("tenant")
}
