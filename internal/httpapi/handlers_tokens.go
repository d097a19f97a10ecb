package httpapi

import (
	"net/http"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func toTokenJSON(t flotilla.Token) api.Token {
	out := api.Token{ID: t.ID, Tenant: t.Tenant, Name: t.Name, Scopes: []string{}, CreatedAt: t.CreatedAt,
		ExpiresAt: timePtr(t.ExpiresAt), RevokedAt: timePtr(t.RevokedAt)}
	for _, sc := range t.Scopes {
		out.Scopes = append(out.Scopes, string(sc))
	}
	return out
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant    string     `json:"tenant"`
		Name      string     `json:"name"`
		Scopes    []string   `json:"scopes"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	t, secret, err := s.core.CreateToken(r.Context(), p, core.NewToken{Tenant: tenantOf(req.Tenant, r), Name: req.Name, Scopes: req.Scopes, ExpiresAt: req.ExpiresAt})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := toTokenJSON(t)
	out.Token = secret
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request, p core.Principal) {
	list, err := s.core.ListTokens(r.Context(), p, r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.Token]{Items: []api.Token{}}
	for _, t := range list {
		out.Items = append(out.Items, toTokenJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if err := s.core.RevokeToken(r.Context(), p, r.PathValue("id")); err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
