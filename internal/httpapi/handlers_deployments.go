package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func toDeploymentJSON(d flotilla.Deployment) api.Deployment {
	out := api.Deployment{ID: d.ID, DeviceID: d.DeviceID, Artifact: api.ArtifactRef{Name: d.ArtifactName, Version: d.ArtifactVersion},
		Type: d.Type, State: d.State, Delivery: d.Delivery, UpdateID: d.UpdateID, RolloutID: d.RolloutID, Attempt: d.Attempt,
		Progress: api.Progress{Cnt: d.ProgressCnt, Of: d.ProgressOf}, Healthy: d.Healthy, Message: d.Message, ForceAt: timePtr(d.ForceAt),
		MaintenanceWindow: d.Window, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, StartedAt: timePtr(d.StartedAt),
		RetrievedAt: timePtr(d.RetrievedAt), FinishedAt: timePtr(d.FinishedAt), History: []api.HistoryEntry{}}
	if d.RolloutID != "" {
		w := d.Wave
		out.Wave = &w
	}
	for _, ev := range d.History {
		e := api.HistoryEntry{At: ev.At, State: ev.State, Execution: ev.Execution, Finished: ev.Finished, Code: ev.Code, Details: ev.Details, Source: ev.Source}
		if ev.Of > 0 {
			e.Progress = &api.Progress{Cnt: ev.Cnt, Of: ev.Of}
		}
		out.History = append(out.History, e)
	}
	return out
}

func (s *Server) handleAssignDeployment(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant            string                      `json:"tenant"`
		Artifact          api.ArtifactRef             `json:"artifact"`
		Type              string                      `json:"type"`
		ForceAt           *time.Time                  `json:"force_at"`
		MaintenanceWindow *flotilla.MaintenanceWindow `json:"maintenance_window"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	d, err := s.core.AssignDeployment(r.Context(), p, core.AssignRequest{Tenant: tenantOf(req.Tenant, r), DeviceID: r.PathValue("id"),
		ArtifactName: req.Artifact.Name, ArtifactVersion: req.Artifact.Version, Type: req.Type, ForceAt: req.ForceAt, Window: req.MaintenanceWindow})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toDeploymentJSON(d))
}

func (s *Server) handleListDeployments(w http.ResponseWriter, r *http.Request, p core.Principal) {
	limit, _, err := page(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	list, err := s.core.ListDeviceDeployments(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"), limit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.Deployment]{Items: []api.Deployment{}}
	for _, d := range list {
		out.Items = append(out.Items, toDeploymentJSON(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func deploymentID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("did"), 10, 64)
	if err != nil {
		return 0, flotilla.Errorf(flotilla.ENotFound, "deployment %q not found", r.PathValue("did"))
	}
	return id, nil
}

func (s *Server) handleGetDeployment(w http.ResponseWriter, r *http.Request, p core.Principal) {
	did, err := deploymentID(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	d, err := s.core.GetDeviceDeployment(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"), did)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toDeploymentJSON(d))
}

func (s *Server) handleCancelDeployment(w http.ResponseWriter, r *http.Request, p core.Principal) {
	did, err := deploymentID(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	d, err := s.core.CancelDeployment(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"), did)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toDeploymentJSON(d))
}
