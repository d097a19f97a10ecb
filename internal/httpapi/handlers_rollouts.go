package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
	"github.com/flotilla-ota/flotilla/rollout"
)

type waveJSON struct {
	Index      int                 `json:"index"`
	Name       string              `json:"name"`
	Size       int                 `json:"size"`
	Status     flotilla.WaveStatus `json:"status"`
	Counts     map[string]int      `json:"counts"`
	Unhealthy  int                 `json:"unhealthy,omitempty"`
	StartedAt  *time.Time          `json:"started_at,omitempty"`
	SuccessAt  *time.Time          `json:"success_at,omitempty"`
	FinishedAt *time.Time          `json:"finished_at,omitempty"`
	ErrorAck   bool                `json:"error_acknowledged,omitempty"`
	Reason     string              `json:"reason,omitempty"`
}

type rolloutJSON struct {
	ID                string                      `json:"id"`
	Tenant            string                      `json:"tenant"`
	Name              string                      `json:"name"`
	Artifact          artifactRef                 `json:"artifact"`
	Selector          string                      `json:"selector"`
	Type              flotilla.DeploymentType     `json:"type"`
	ForceAt           *time.Time                  `json:"force_at,omitempty"`
	MaintenanceWindow *flotilla.MaintenanceWindow `json:"maintenance_window,omitempty"`
	Policy            flotilla.Policy             `json:"policy"`
	PolicyName        string                      `json:"policy_name,omitempty"`
	Delivery          string                      `json:"delivery"`
	Channel           string                      `json:"channel,omitempty"`
	Groups            []flotilla.WaveSpec         `json:"groups,omitempty"`
	Devices           []string                    `json:"devices,omitempty"`
	Status            flotilla.RolloutStatus      `json:"status"`
	Reason            string                      `json:"reason,omitempty"`
	Total             int                         `json:"total"`
	Counts            map[string]int              `json:"counts"`
	CreatedAt         time.Time                   `json:"created_at"`
	UpdatedAt         time.Time                   `json:"updated_at"`
	StartedAt         *time.Time                  `json:"started_at,omitempty"`
	FinishedAt        *time.Time                  `json:"finished_at,omitempty"`
	Waves             []waveJSON                  `json:"waves,omitempty"`
}

func toRolloutJSON(r flotilla.Rollout, waves []flotilla.Wave) rolloutJSON {
	out := rolloutJSON{ID: r.ID, Tenant: r.Tenant, Name: r.Name, Artifact: artifactRef{r.ArtifactName, r.ArtifactVersion}, Selector: r.Selector,
		Type: r.Type, ForceAt: timePtr(r.ForceAt), MaintenanceWindow: r.Window, Policy: r.Policy, PolicyName: r.PolicyName, Delivery: r.Delivery,
		Channel: r.Channel, Groups: r.Groups, Devices: r.DeviceIDs, Status: r.Status, Reason: r.Reason, Total: r.Total, Counts: map[string]int{},
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, StartedAt: timePtr(r.StartedAt), FinishedAt: timePtr(r.FinishedAt)}
	for _, w := range waves {
		wj := waveJSON{Index: w.Index, Name: w.Name, Size: w.Size, Status: w.Status, Counts: map[string]int{}, Unhealthy: w.Unhealthy,
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

// rolloutRequest is the body of POST /rollouts; waves is a number of even
// waves, groups an explicit list.
type rolloutRequest struct {
	Tenant            string                      `json:"tenant"`
	Name              string                      `json:"name"`
	Artifact          artifactRef                 `json:"artifact"`
	Selector          string                      `json:"selector"`
	Waves             int                         `json:"waves"`
	Groups            []flotilla.WaveSpec         `json:"groups"`
	Type              string                      `json:"type"`
	ForceAt           *time.Time                  `json:"force_at"`
	Policy            *flotilla.Policy            `json:"policy"`
	PolicyName        string                      `json:"policy_name"`
	MaintenanceWindow *flotilla.MaintenanceWindow `json:"maintenance_window"`
	Delivery          string                      `json:"delivery"`
	Draft             bool                        `json:"draft"`
	Start             bool                        `json:"start"`
	Devices           []string                    `json:"devices"`
}

func (s *Server) handleCreateRollout(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req rolloutRequest
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	ro, waves, err := s.core.CreateRollout(r.Context(), p, core.RolloutRequest{Tenant: tenantOf(req.Tenant, r), Name: req.Name,
		ArtifactName: req.Artifact.Name, ArtifactVersion: req.Artifact.Version, Selector: req.Selector, Waves: req.Waves, Groups: req.Groups,
		Type: req.Type, ForceAt: req.ForceAt, Policy: req.Policy, PolicyName: req.PolicyName, Window: req.MaintenanceWindow,
		Delivery: req.Delivery, Draft: req.Draft, Start: req.Start, DeviceIDs: req.Devices})
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
	type wave struct {
		Index  int      `json:"index"`
		Name   string   `json:"name"`
		Size   int      `json:"size"`
		Sample []string `json:"sample"`
	}
	out := struct {
		Total int    `json:"total"`
		Waves []wave `json:"waves"`
	}{Total: pv.Total, Waves: []wave{}}
	for i, d := range pv.Waves {
		smp := pv.Sample[i]
		if smp == nil {
			smp = []string{}
		}
		out.Waves = append(out.Waves, wave{Index: i, Name: d.Name, Size: d.Size, Sample: smp})
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
	out := listResponse[rolloutJSON]{Items: []rolloutJSON{}}
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
	type runJSON struct {
		ID        int64          `json:"id"`
		Wave      int            `json:"wave"`
		StartedAt time.Time      `json:"started_at"`
		EndedAt   *time.Time     `json:"ended_at,omitempty"`
		Counts    map[string]int `json:"counts"`
		Reason    string         `json:"reason,omitempty"`
	}
	out := listResponse[runJSON]{Items: []runJSON{}}
	for _, run := range runs {
		c := map[string]int{}
		for k, v := range run.Counts {
			if v != 0 {
				c[string(k)] = v
			}
		}
		out.Items = append(out.Items, runJSON{ID: run.ID, Wave: run.Wave, StartedAt: run.StartedAt, EndedAt: timePtr(run.EndedAt), Counts: c, Reason: run.Reason})
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
	type devJSON struct {
		DeviceID     string                   `json:"device_id"`
		Wave         int                      `json:"wave"`
		DeploymentID int64                    `json:"deployment_id,omitempty"`
		State        flotilla.DeploymentState `json:"state"`
		Attempt      int                      `json:"attempt,omitempty"`
		Healthy      *bool                    `json:"healthy,omitempty"`
		Message      string                   `json:"message,omitempty"`
		UpdatedAt    *time.Time               `json:"updated_at,omitempty"`
	}
	out := listResponse[devJSON]{Items: []devJSON{}}
	if len(list) > limit {
		list = list[:limit]
		out.NextCursor = list[limit-1].DeviceID
	}
	for _, d := range list {
		out.Items = append(out.Items, devJSON{DeviceID: d.DeviceID, Wave: d.Wave, DeploymentID: d.DeploymentID, State: d.State, Attempt: d.Attempt,
			Healthy: d.Healthy, Message: d.Message, UpdatedAt: timePtr(d.UpdatedAt)})
	}
	writeJSON(w, http.StatusOK, out)
}

type policyJSON struct {
	Name      string          `json:"name"`
	Policy    flotilla.Policy `json:"policy"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func toPolicyJSON(p flotilla.NamedPolicy) policyJSON {
	return policyJSON{Name: p.Name, Policy: p.Policy, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
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
	out := listResponse[policyJSON]{Items: []policyJSON{}}
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

type channelJSON struct {
	Name       string          `json:"name"`
	Artifact   artifactRef     `json:"artifact"`
	Selector   string          `json:"selector"`
	Policy     flotilla.Policy `json:"policy"`
	PolicyName string          `json:"policy_name,omitempty"`
	Waves      int             `json:"waves"`
	RolloutID  string          `json:"rollout_id,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	// Rollout is the rollout this request started, if any.
	Rollout *rolloutJSON `json:"rollout,omitempty"`
}

func toChannelJSON(c flotilla.Channel) channelJSON {
	return channelJSON{Name: c.Name, Artifact: artifactRef{c.ArtifactName, c.ArtifactVersion}, Selector: c.Selector, Policy: c.Policy,
		PolicyName: c.PolicyName, Waves: c.Waves, RolloutID: c.RolloutID, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func (s *Server) handlePutChannel(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant     string           `json:"tenant"`
		Artifact   artifactRef      `json:"artifact"`
		Selector   string           `json:"selector"`
		Policy     *flotilla.Policy `json:"policy"`
		PolicyName string           `json:"policy_name"`
		Waves      int              `json:"waves"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	rec, started, created, err := s.core.PutChannel(r.Context(), p, core.ChannelRequest{Tenant: tenantOf(req.Tenant, r), Name: r.PathValue("name"),
		ArtifactName: req.Artifact.Name, ArtifactVersion: req.Artifact.Version, Selector: req.Selector, Policy: req.Policy,
		PolicyName: req.PolicyName, Waves: req.Waves})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := toChannelJSON(rec)
	if started != nil {
		rj := toRolloutJSON(*started, nil)
		out.Rollout = &rj
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
}

func (s *Server) handleGetChannel(w http.ResponseWriter, r *http.Request, p core.Principal) {
	rec, err := s.core.GetChannel(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toChannelJSON(rec))
}

func (s *Server) handleListChannels(w http.ResponseWriter, r *http.Request, p core.Principal) {
	list, err := s.core.ListChannels(r.Context(), p, r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := listResponse[channelJSON]{Items: []channelJSON{}}
	for _, c := range list {
		out.Items = append(out.Items, toChannelJSON(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeleteChannel(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if err := s.core.DeleteChannel(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name")); err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
