package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

type artifactRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type progressJSON struct {
	Cnt int `json:"cnt"`
	Of  int `json:"of"`
}

type eventJSON struct {
	At        time.Time                `json:"at"`
	State     flotilla.DeploymentState `json:"state"`
	Execution string                   `json:"execution,omitempty"`
	Finished  string                   `json:"finished,omitempty"`
	Progress  *progressJSON            `json:"progress,omitempty"`
	Code      *int                     `json:"code,omitempty"`
	Details   []string                 `json:"details,omitempty"`
	Source    string                   `json:"source"`
}

type deploymentJSON struct {
	ID                int64                       `json:"id"`
	DeviceID          string                      `json:"device_id"`
	Artifact          artifactRef                 `json:"artifact"`
	Type              flotilla.DeploymentType     `json:"type"`
	State             flotilla.DeploymentState    `json:"state"`
	Delivery          string                      `json:"delivery"`
	UpdateID          string                      `json:"update_id,omitempty"`
	RolloutID         string                      `json:"rollout_id,omitempty"`
	Wave              *int                        `json:"wave,omitempty"`
	Attempt           int                         `json:"attempt"`
	Progress          progressJSON                `json:"progress"`
	Healthy           *bool                       `json:"healthy,omitempty"`
	Message           string                      `json:"message,omitempty"`
	ForceAt           *time.Time                  `json:"force_at,omitempty"`
	MaintenanceWindow *flotilla.MaintenanceWindow `json:"maintenance_window,omitempty"`
	CreatedAt         time.Time                   `json:"created_at"`
	UpdatedAt         time.Time                   `json:"updated_at"`
	StartedAt         *time.Time                  `json:"started_at,omitempty"`
	RetrievedAt       *time.Time                  `json:"retrieved_at,omitempty"`
	FinishedAt        *time.Time                  `json:"finished_at,omitempty"`
	History           []eventJSON                 `json:"history"`
}

func toDeploymentJSON(d flotilla.Deployment) deploymentJSON {
	out := deploymentJSON{ID: d.ID, DeviceID: d.DeviceID, Artifact: artifactRef{d.ArtifactName, d.ArtifactVersion},
		Type: d.Type, State: d.State, Delivery: d.Delivery, UpdateID: d.UpdateID, RolloutID: d.RolloutID, Attempt: d.Attempt,
		Progress: progressJSON{d.ProgressCnt, d.ProgressOf}, Healthy: d.Healthy, Message: d.Message, ForceAt: timePtr(d.ForceAt),
		MaintenanceWindow: d.Window, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, StartedAt: timePtr(d.StartedAt),
		RetrievedAt: timePtr(d.RetrievedAt), FinishedAt: timePtr(d.FinishedAt), History: []eventJSON{}}
	if d.RolloutID != "" {
		w := d.Wave
		out.Wave = &w
	}
	for _, ev := range d.History {
		e := eventJSON{At: ev.At, State: ev.State, Execution: ev.Execution, Finished: ev.Finished, Code: ev.Code, Details: ev.Details, Source: ev.Source}
		if ev.Of > 0 {
			e.Progress = &progressJSON{ev.Cnt, ev.Of}
		}
		out.History = append(out.History, e)
	}
	return out
}

func (s *Server) handleAssignDeployment(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant            string                      `json:"tenant"`
		Artifact          artifactRef                 `json:"artifact"`
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
	out := listResponse[deploymentJSON]{Items: []deploymentJSON{}}
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
