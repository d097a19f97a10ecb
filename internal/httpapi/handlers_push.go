package httpapi

import (
	"net/http"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
	"github.com/flotilla-ota/flotilla/push"
)

func toPushJSON(d flotilla.Deployment, st *push.Status) api.PushUpdate {
	return api.PushUpdate{ID: d.UpdateID, DeploymentID: d.ID, State: d.State, Artifact: api.ArtifactRef{Name: d.ArtifactName, Version: d.ArtifactVersion},
		Message: d.Message, Node: st, NodeReachable: st != nil}
}

func (s *Server) pushEnabled(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Push == nil {
		s.error(w, r, flotilla.Errorf(flotilla.EUnavailable, "push delivery is not enabled on this server"))
		return false
	}
	return true
}

func (s *Server) handleStartPushUpdate(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if !s.pushEnabled(w, r) {
		return
	}
	var req struct {
		Tenant   string          `json:"tenant"`
		ID       string          `json:"id"`
		Artifact api.ArtifactRef `json:"artifact"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	d, st, err := s.opts.Push.StartUpdate(r.Context(), p, tenantOf(req.Tenant, r), r.PathValue("id"), req.ID, req.Artifact.Name, req.Artifact.Version)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Location", s.baseURL(r)+"/api/v1/devices/"+r.PathValue("id")+"/updates/"+req.ID)
	writeJSON(w, http.StatusAccepted, toPushJSON(d, &st))
}

func (s *Server) handlePushUpdateStatus(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if !s.pushEnabled(w, r) {
		return
	}
	d, st, err := s.opts.Push.UpdateStatus(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"), r.PathValue("uid"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPushJSON(d, st))
}

func (s *Server) handleAbortPushUpdate(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if !s.pushEnabled(w, r) {
		return
	}
	d, st, err := s.opts.Push.AbortUpdate(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"), r.PathValue("uid"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPushJSON(d, &st))
}
