package httpapi

import (
	"net/http"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func toPolicyJSON(p flotilla.NamedPolicy) api.Policy {
	return api.Policy{Name: p.Name, Policy: p.Policy, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func (s *Server) handleCreatePolicy(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant string          `json:"tenant"`
		Name   string          `json:"name"`
		Policy flotilla.Policy `json:"policy"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if _, err := s.core.GetPolicy(r.Context(), p, tenantOf(req.Tenant, r), req.Name); err == nil {
		s.error(w, r, flotilla.Errorf(flotilla.EConflict, "policy %q exists; PUT /api/v1/policies/%s replaces it", req.Name, req.Name))
		return
	}
	rec, _, err := s.core.PutPolicy(r.Context(), p, tenantOf(req.Tenant, r), req.Name, req.Policy)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toPolicyJSON(rec))
}

func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Policy flotilla.Policy `json:"policy"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	rec, created, err := s.core.PutPolicy(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"), req.Policy)
	if err != nil {
		s.error(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, toPolicyJSON(rec))
}

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request, p core.Principal) {
	rec, err := s.core.GetPolicy(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPolicyJSON(rec))
}

func (s *Server) handleListPolicies(w http.ResponseWriter, r *http.Request, p core.Principal) {
	list, err := s.core.ListPolicies(r.Context(), p, r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.Policy]{Items: []api.Policy{}}
	for _, rec := range list {
		out.Items = append(out.Items, toPolicyJSON(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeletePolicy(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if err := s.core.DeletePolicy(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name")); err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
