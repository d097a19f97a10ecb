package httpapi

import (
	"net/http"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func toChannelJSON(c flotilla.Channel) api.Channel {
	return api.Channel{Name: c.Name, Artifact: api.ArtifactRef{Name: c.ArtifactName, Version: c.ArtifactVersion}, Selector: c.Selector, Policy: c.Policy,
		PolicyName: c.PolicyName, Waves: c.Waves, RolloutID: c.RolloutID, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func (s *Server) handlePutChannel(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Tenant     string           `json:"tenant"`
		Artifact   api.ArtifactRef  `json:"artifact"`
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
	out := api.List[api.Channel]{Items: []api.Channel{}}
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
