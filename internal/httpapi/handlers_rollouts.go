package httpapi

import (
	"net/http"
	"strconv"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
	"github.com/flotilla-ota/flotilla/rollout"
)

func toRolloutJSON(r flotilla.Rollout, waves []flotilla.Wave) api.Rollout {
	out := api.Rollout{ID: r.ID, Tenant: r.Tenant, Name: r.Name, Artifact: api.ArtifactRef{Name: r.ArtifactName, Version: r.ArtifactVersion}, Selector: r.Selector,
		Type: r.Type, ForceAt: timePtr(r.ForceAt), MaintenanceWindow: r.Window, Policy: r.Policy, PolicyName: r.PolicyName, Delivery: r.Delivery,
		Channel: r.Channel, Groups: r.Groups, Devices: r.DeviceIDs, Status: r.Status, Reason: r.Reason, Total: r.Total, Counts: map[string]int{},
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, StartedAt: timePtr(r.StartedAt), FinishedAt: timePtr(r.FinishedAt)}
	for _, w := range waves {
		wj := api.Wave{Index: w.Index, Name: w.Name, Size: w.Size, Status: w.Status, Counts: map[string]int{}, Unhealthy: w.Unhealthy, Waiting: w.Waiting,
			StartedAt: timePtr(w.StartedAt), SuccessAt: timePtr(w.SuccessAt), FinishedAt: timePtr(w.FinishedAt), ErrorAck: w.ErrorAck, Reason: w.Reason}
		for st, n := range w.Counts {
			if n != 0 {
				wj.Counts[string(st)] = n
				out.Counts[string(st)] += n
			}
		}
		out.Waves = append(out.Waves, wj)
	}
	return out
}

func (s *Server) handleCreateRollout(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req api.RolloutRequest
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	ro, waves, err := s.core.CreateRollout(r.Context(), p, core.RolloutRequest{Tenant: tenantOf(req.Tenant, r), Name: req.Name,
		ArtifactName: req.Artifact.Name, ArtifactVersion: req.Artifact.Version, Selector: req.Selector, Waves: req.Waves, Groups: req.Groups,
		Type: req.Type, ForceAt: req.ForceAt, Policy: req.Policy, PolicyName: req.PolicyName, Window: req.MaintenanceWindow,
		Delivery: req.Delivery, Draft: req.Draft, Start: req.Start, DeviceIDs: req.Devices, AllowEmpty: req.AllowEmpty})
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Location", s.baseURL(r)+"/api/v1/rollouts/"+ro.ID)
	writeJSON(w, http.StatusCreated, toRolloutJSON(ro, waves))
}

func (s *Server) handlePreviewRollout(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant   string              `json:"tenant"`
		Selector string              `json:"selector"`
		Waves    int                 `json:"waves"`
		Groups   []flotilla.WaveSpec `json:"groups"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	pv, err := s.core.PreviewRollout(r.Context(), p, tenantOf(req.Tenant, r), req.Selector, req.Waves, req.Groups)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.Preview{Total: pv.Total, Waves: []api.PreviewWave{}, Warnings: pv.Warnings}
	for i, d := range pv.Waves {
		smp := pv.Sample[i]
		if smp == nil {
			smp = []string{}
		}
		out.Waves = append(out.Waves, api.PreviewWave{Index: i, Name: d.Name, Size: d.Size, Sample: smp})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleListRollouts(w http.ResponseWriter, r *http.Request, p core.Principal) {
	q := r.URL.Query()
	list, err := s.core.ListRollouts(r.Context(), p, q.Get("tenant"), flotilla.RolloutFilter{Status: flotilla.RolloutStatus(q.Get("status")), Channel: q.Get("channel")})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.Rollout]{Items: []api.Rollout{}}
	for _, ro := range list {
		out.Items = append(out.Items, toRolloutJSON(ro, nil))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetRollout(w http.ResponseWriter, r *http.Request, p core.Principal) {
	ro, waves, err := s.core.GetRollout(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toRolloutJSON(ro, waves))
}

func (s *Server) handleDeleteRollout(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if err := s.core.DeleteRollout(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id")); err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleStartRollout(w http.ResponseWriter, r *http.Request, p core.Principal) {
	ro, waves, err := s.core.StartRollout(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toRolloutJSON(ro, waves))
}

// rolloutOp serves pause, resume, abort, retry and next-wave.
func (s *Server) rolloutOp(op rollout.Op) func(http.ResponseWriter, *http.Request, core.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p core.Principal) {
		ro, waves, err := s.core.ChangeRollout(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"), op)
		if err != nil {
			s.error(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, toRolloutJSON(ro, waves))
	}
}

func (s *Server) handleRolloutRuns(w http.ResponseWriter, r *http.Request, p core.Principal) {
	runs, err := s.core.RolloutRuns(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.RolloutRun]{Items: []api.RolloutRun{}}
	for _, run := range runs {
		c := map[string]int{}
		for k, v := range run.Counts {
			if v != 0 {
				c[string(k)] = v
			}
		}
		out.Items = append(out.Items, api.RolloutRun{ID: run.ID, Wave: run.Wave, StartedAt: run.StartedAt, EndedAt: timePtr(run.EndedAt), Counts: c, Reason: run.Reason})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRolloutHistory(w http.ResponseWriter, r *http.Request, p core.Principal) {
	points := 100
	if v := r.URL.Query().Get("points"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 500 {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "points must be from 2 to 500, got %q", v))
			return
		}
		points = n
	}
	ro, hist, err := s.core.RolloutHistory(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("id"), points)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.RolloutHistory{Total: ro.Total, StartedAt: timePtr(ro.StartedAt), FinishedAt: timePtr(ro.FinishedAt), Points: []api.HistoryPoint{}}
	for _, h := range hist {
		out.Points = append(out.Points, api.HistoryPoint{At: h.At, Finished: h.Finished, Succeeded: h.Succeeded, Failed: h.Failed})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRolloutDevices(w http.ResponseWriter, r *http.Request, p core.Principal) {
	limit, cursor, err := page(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	f := flotilla.RolloutDeviceFilter{State: flotilla.DeploymentState(q.Get("state")), AfterID: cursor, Limit: limit + 1}
	if v := q.Get("wave"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "wave must be a wave index (0, 1, ...), got %q", v))
			return
		}
		f.Wave = &n
	}
	list, err := s.core.RolloutDevices(r.Context(), p, q.Get("tenant"), r.PathValue("id"), f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.List[api.RolloutDevice]{Items: []api.RolloutDevice{}}
	if len(list) > limit {
		list = list[:limit]
		out.NextCursor = list[limit-1].DeviceID
	}
	for _, d := range list {
		out.Items = append(out.Items, api.RolloutDevice{DeviceID: d.DeviceID, Wave: d.Wave, DeploymentID: d.DeploymentID, State: d.State, Attempt: d.Attempt,
			Healthy: d.Healthy, Message: d.Message, UpdatedAt: timePtr(d.UpdatedAt)})
	}
	writeJSON(w, http.StatusOK, out)
}
