package httpapi

import (
	"net/http"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/buildinfo"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func toTenantJSON(t flotilla.Tenant) api.Tenant {
	settings := t.Settings
	settings.GatewayKeySealed = "" // the key is shown through hawkBit's system config only
	return api.Tenant{Name: t.Name, AnonymousDDI: t.AnonymousDDI, Settings: settings, CreatedAt: t.CreatedAt}
}

func (s *Server) handleCreateTenant(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Name string `json:"name"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	t, err := s.core.CreateTenant(r.Context(), p, req.Name)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toTenantJSON(t))
}

func (s *Server) handleListTenants(w http.ResponseWriter, r *http.Request, p core.Principal) {
	list, err := s.core.ListTenants(r.Context(), p)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.Tenant]{Items: []api.Tenant{}}
	for _, t := range list {
		out.Items = append(out.Items, toTenantJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetTenant(w http.ResponseWriter, r *http.Request, p core.Principal) {
	t, err := s.core.GetTenant(r.Context(), p, r.PathValue("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toTenantJSON(t))
}

func (s *Server) handlePatchTenant(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		AnonymousDDI *bool                    `json:"anonymous_ddi"`
		Settings     *flotilla.TenantSettings `json:"settings"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	t, err := s.core.UpdateTenant(r.Context(), p, r.PathValue("tenant"), core.TenantPatch{AnonymousDDI: req.AnonymousDDI, Settings: req.Settings})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toTenantJSON(t))
}

// handleInfo tells a client what it talks to: the server's version and
// the polling interval devices are told, which sets how soon a rollout's
// devices notice it.
func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request, p core.Principal) {
	tenant, err := p.TenantFor(r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.Info{Version: buildinfo.Version(), PollInterval: flotilla.Duration(s.core.Config.PollInterval),
		OfflineAfter: flotilla.Duration(s.core.Config.OfflineAfter), Tenant: tenant})
}
