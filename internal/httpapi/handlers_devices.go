package httpapi

import (
	"net/http"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

// toDeviceJSON renders a device for p: its DDI token only for holders of
// devices:tokens.
func (s *Server) toDeviceJSON(p core.Principal, d flotilla.Device) api.Device {
	out := api.Device{ID: d.ID, Tenant: d.Tenant, Labels: d.Labels, Attributes: d.Attributes, Version: d.Version,
		Address: d.Address, Status: s.core.DeviceStatus(d), LastSeenAt: timePtr(d.LastSeenAt),
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, Token: s.core.DeviceToken(p, d)}
	if d.DMFExchange != "" {
		out.DMF = &api.DeviceDMF{Link: d.DMFLink, Exchange: d.DMFExchange}
	}
	return out
}

func (s *Server) handleCreateDevice(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant     string            `json:"tenant"`
		ID         string            `json:"id"`
		Labels     map[string]string `json:"labels"`
		Attributes map[string]string `json:"attributes"`
		Address    string            `json:"address"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	d, cred, err := s.core.CreateDevice(r.Context(), p, core.NewDevice{Tenant: tenantOf(req.Tenant, r), ID: req.ID, Labels: req.Labels, Attributes: req.Attributes, Address: req.Address})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := s.toDeviceJSON(p, d)
	out.Token, out.NodeToken = cred.Token, cred.NodeToken
	w.Header().Set("Location", s.baseURL(r)+"/api/v1/devices/"+d.ID)
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request, p core.Principal) {
	limit, cursor, err := page(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	pg, err := s.core.ListDevices(r.Context(), p, core.DeviceListQuery{Tenant: q.Get("tenant"), Selector: q.Get("selector"), Prefix: q.Get("prefix"),
		Sort: q.Get("sort"), Cursor: cursor, Limit: limit, WithDeployments: true})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.Device]{Items: []api.Device{}, NextCursor: pg.NextCursor}
	if pg.Total >= 0 {
		out.Total = &pg.Total
	}
	for _, d := range pg.Devices {
		dj := s.toDeviceJSON(p, d)
		if dep, ok := pg.Deployments[d.ID]; ok {
			dj.Deployment = &api.DeviceDeployment{ID: dep.ID, State: dep.State, Artifact: api.ArtifactRef{Name: dep.ArtifactName, Version: dep.ArtifactVersion},
				RolloutID: dep.RolloutID, Message: dep.Message, UpdatedAt: dep.UpdatedAt}
		}
		out.Items = append(out.Items, dj)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetDevice(w http.ResponseWriter, r *http.Request, p core.Principal) {
	d, err := s.core.GetDevice(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.toDeviceJSON(p, d))
}

func (s *Server) handlePatchDevice(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Labels     *map[string]string `json:"labels"`
		Attributes *map[string]string `json:"attributes"`
		Address    *string            `json:"address"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	d, nodeToken, err := s.core.UpdateDevice(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"),
		flotilla.DevicePatch{Labels: req.Labels, Attributes: req.Attributes, Address: req.Address})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := s.toDeviceJSON(p, d)
	out.NodeToken = nodeToken
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRotateDeviceToken(w http.ResponseWriter, r *http.Request, p core.Principal) {
	d, secret, err := s.core.RotateDeviceToken(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := s.toDeviceJSON(p, d)
	out.Token = secret
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRotateNodeToken(w http.ResponseWriter, r *http.Request, p core.Principal) {
	d, secret, err := s.core.RotateNodeToken(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := s.toDeviceJSON(p, d)
	out.NodeToken = secret
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeleteDevice(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if err := s.core.DeleteDevice(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id")); err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleFleet(w http.ResponseWriter, r *http.Request, p core.Principal) {
	sum, err := s.core.FleetSummary(r.Context(), p, r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": sum.Total, "online": sum.Online, "never_seen": sum.Never,
		"offline": sum.Total - sum.Online - sum.Never, "versions": sum.Versions})
}
