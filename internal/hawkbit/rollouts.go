package hawkbit

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/rollout"
)

func (s *Server) rolloutRoutes() {
	s.handle("POST "+Prefix+"/rollouts", s.createRollout)
	s.handle("GET "+Prefix+"/rollouts", s.listRollouts)
	s.handle("GET "+Prefix+"/rollouts/{id}", s.getRollout)
	s.handle("DELETE "+Prefix+"/rollouts/{id}", s.deleteRollout)
	s.handle("POST "+Prefix+"/rollouts/{id}/start", s.rolloutOp("start"))
	s.handle("POST "+Prefix+"/rollouts/{id}/pause", s.rolloutOp("pause"))
	s.handle("POST "+Prefix+"/rollouts/{id}/resume", s.rolloutOp("resume"))
	s.handle("GET "+Prefix+"/rollouts/{id}/deploygroups", s.listGroups)
	s.handle("GET "+Prefix+"/rollouts/{id}/deploygroups/{groupId}", s.getGroup)
	s.handle("GET "+Prefix+"/rollouts/{id}/deploygroups/{groupId}/targets", s.groupTargets)
}

type condition struct {
	Condition  string `json:"condition"`
	Expression string `json:"expression"`
}

type reaction struct {
	Action     string `json:"action"`
	Expression string `json:"expression"`
}

type rolloutJSON struct {
	audit
	ID                    int64          `json:"id"`
	Name                  string         `json:"name"`
	Description           string         `json:"description"`
	TargetFilterQuery     string         `json:"targetFilterQuery"`
	DistributionSetID     int64          `json:"distributionSetId"`
	Status                string         `json:"status"`
	TotalTargets          int            `json:"totalTargets"`
	TotalTargetsPerStatus map[string]int `json:"totalTargetsPerStatus"`
	TotalGroups           int            `json:"totalGroups"`
	Type                  string         `json:"type"`
	ForceTime             *int64         `json:"forcetime,omitempty"`
	Deleted               bool           `json:"deleted"`
	Links                 links          `json:"_links"`
}

// rolloutStatus is hawkBit's name for a rollout status.
func rolloutStatus(st flotilla.RolloutStatus) string {
	switch st {
	case flotilla.RolloutCompleted, flotilla.RolloutPartial:
		return "finished"
	case flotilla.RolloutAborted, flotilla.RolloutFailed:
		return "stopped"
	case flotilla.RolloutDraft:
		return "ready"
	}
	return string(st)
}

// perStatus counts devices hawkBit's way: notstarted (in a wave not yet
// started), scheduled, running, finished, error, cancelled.
func perStatus(counts map[flotilla.DeploymentState]int) map[string]int {
	out := map[string]int{"running": 0, "notstarted": 0, "scheduled": 0, "cancelled": 0, "finished": 0, "error": 0}
	for st, n := range counts {
		switch st {
		case flotilla.StateScheduled:
			out["notstarted"] += n
		case flotilla.StateSucceeded:
			out["finished"] += n
		case flotilla.StateFailed, flotilla.StateTimedOut, flotilla.StateRejected:
			out["error"] += n
		case flotilla.StateCanceled, flotilla.StateSkipped:
			out["cancelled"] += n
		default:
			out["running"] += n
		}
	}
	return out
}

func (s *Server) rolloutJSON(r *http.Request, c call, ro flotilla.Rollout, waves []flotilla.Wave) (rolloutJSON, error) {
	num, err := s.core.Store.RolloutNumber(r.Context(), c.tenant, ro.ID)
	if err != nil {
		return rolloutJSON{}, err
	}
	filter, desc, err := s.core.Store.RolloutFilter(r.Context(), c.tenant, ro.ID)
	if err != nil {
		return rolloutJSON{}, err
	}
	if filter == "" && ro.Selector != "" {
		filter = ro.Selector // a native rollout: its label selector
	}
	counts := map[flotilla.DeploymentState]int{}
	for _, w := range waves {
		for st, n := range w.Counts {
			counts[st] += n
		}
	}
	self := s.base(r) + "/rollouts/" + strconv.FormatInt(num, 10)
	return rolloutJSON{audit: auditOf(ro.CreatedAt, ro.UpdatedAt), ID: num, Name: ro.Name, Description: desc, TargetFilterQuery: filter,
		DistributionSetID: ro.ArtifactID, Status: rolloutStatus(ro.Status), TotalTargets: ro.Total, TotalTargetsPerStatus: perStatus(counts),
		TotalGroups: len(waves), Type: string(ro.Type), ForceTime: msPtr(ro.ForceAt),
		Links: links{"self": {self}, "start": {self + "/start"}, "pause": {self + "/pause"}, "resume": {self + "/resume"},
			"groups": {self + "/deploygroups?offset=0&limit=50"}, "distributionset": {s.base(r) + "/distributionsets/" + strconv.FormatInt(ro.ArtifactID, 10)}}}, nil
}

type rolloutBody struct {
	Name              string     `json:"name"`
	Description       string     `json:"description"`
	DistributionSetID int64      `json:"distributionSetId"`
	TargetFilterQuery string     `json:"targetFilterQuery"`
	AmountGroups      int        `json:"amountGroups"`
	Type              string     `json:"type"`
	ForceTime         int64      `json:"forcetime"`
	StartAt           int64      `json:"startAt"`
	SuccessCondition  *condition `json:"successCondition"`
	SuccessAction     *reaction  `json:"successAction"`
	ErrorCondition    *condition `json:"errorCondition"`
	ErrorAction       *reaction  `json:"errorAction"`
	Groups            []struct {
		Name              string     `json:"name"`
		TargetFilterQuery string     `json:"targetFilterQuery"`
		TargetPercentage  *float64   `json:"targetPercentage"`
		SuccessCondition  *condition `json:"successCondition"`
		ErrorCondition    *condition `json:"errorCondition"`
	} `json:"groups"`
}

// threshold reads a THRESHOLD condition's percentage.
func threshold(c *condition, what string) (*float64, error) {
	if c == nil {
		return nil, nil
	}
	if c.Condition != "" && !strings.EqualFold(c.Condition, "THRESHOLD") {
		return nil, flotilla.Errorf(flotilla.EInvalid, "%s condition %q is not supported: use THRESHOLD", what, c.Condition)
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(c.Expression), "%"), 64)
	if err != nil || v < 0 || v > 100 {
		return nil, flotilla.Errorf(flotilla.EInvalid, "%s condition expression %q must be a percentage from 0 to 100", what, c.Expression)
	}
	return &v, nil
}

// createRollout makes a Flotilla rollout of the targets the filter matches
// now, in amountGroups waves (or the groups' percentages), with the
// success and error thresholds as its policy.
func (s *Server) createRollout(w http.ResponseWriter, r *http.Request, c call) {
	var b rolloutBody
	if err := decode(r, &b); err != nil {
		s.error(w, r, err)
		return
	}
	if b.StartAt != 0 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "startAt is not supported: start the rollout with POST /rest/v1/rollouts/{id}/start"))
		return
	}
	a, err := s.release(r.Context(), c, b.DistributionSetID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	succ, err := threshold(b.SuccessCondition, "success")
	if err != nil {
		s.error(w, r, err)
		return
	}
	errPct, err := threshold(b.ErrorCondition, "error")
	if err != nil {
		s.error(w, r, err)
		return
	}
	if b.SuccessAction != nil && b.SuccessAction.Action != "" && !strings.EqualFold(b.SuccessAction.Action, "NEXTGROUP") {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "successAction %q is not supported: use NEXTGROUP", b.SuccessAction.Action))
		return
	}
	policy := flotilla.Policy{SuccessThreshold: succ, ErrorThreshold: errPct}
	if succ != nil {
		ratio := *succ / 100
		policy.MinSuccessRatio = &ratio
	} else {
		zero := 0.0
		policy.MinSuccessRatio = &zero
	}
	if b.ErrorAction != nil && b.ErrorAction.Action != "" {
		switch strings.ToUpper(b.ErrorAction.Action) {
		case "PAUSE":
			policy.ErrorAction = flotilla.ErrorActionPause
		default:
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "errorAction %q is not supported: use PAUSE", b.ErrorAction.Action))
			return
		}
	}
	ids, err := s.matchTargets(r.Context(), c, b.TargetFilterQuery)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if len(ids) == 0 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "targetFilterQuery %q matches no target", b.TargetFilterQuery))
		return
	}
	req := core.RolloutRequest{Tenant: c.tenant, Name: b.Name, ArtifactName: a.Name, ArtifactVersion: a.Version, DeviceIDs: ids,
		Waves: b.AmountGroups, Type: b.Type, Policy: &policy}
	if req.Type == "" {
		req.Type = string(flotilla.TypeForced)
	}
	if b.ForceTime > 0 {
		t := time.UnixMilli(b.ForceTime).UTC()
		req.ForceAt = &t
	}
	for _, g := range b.Groups {
		if g.TargetFilterQuery != "" {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "a group's targetFilterQuery is not supported: give each group a targetPercentage, or use amountGroups"))
			return
		}
		req.Groups = append(req.Groups, flotilla.WaveSpec{Name: g.Name, Percent: g.TargetPercentage})
	}
	if len(req.Groups) > 0 {
		req.Waves = 0
	} else if req.Waves <= 0 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "give amountGroups (how many deployment groups) or groups"))
		return
	}
	ro, waves, err := s.core.CreateRollout(r.Context(), c.p, req)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.core.Store.SetRolloutFilter(r.Context(), c.tenant, ro.ID, b.TargetFilterQuery, b.Description); err != nil {
		s.error(w, r, err)
		return
	}
	out, err := s.rolloutJSON(r, c, ro, waves)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// rollout resolves the path's rollout number.
func (s *Server) rollout(r *http.Request, c call) (flotilla.Rollout, []flotilla.Wave, error) {
	num, err := pathInt(r, "id", "Rollout")
	if err != nil {
		return flotilla.Rollout{}, nil, err
	}
	id, err := s.core.Store.RolloutByNumber(r.Context(), c.tenant, num)
	if err == nil {
		var ro flotilla.Rollout
		var waves []flotilla.Wave
		if ro, waves, err = s.core.GetRollout(r.Context(), c.p, c.tenant, id); err == nil {
			return ro, waves, nil
		}
	}
	if flotilla.IsCode(err, flotilla.ENotFound) {
		err = flotilla.Errorf(flotilla.ENotFound, "Rollout with given identifier {%d} does not exist.", num)
	}
	return flotilla.Rollout{}, nil, err
}

var rolloutFilter = knownIn("id", "name", "status", "description", "createdat")

func (s *Server) listRollouts(w http.ResponseWriter, r *http.Request, c call) {
	list, err := s.core.ListRollouts(r.Context(), c.p, c.tenant, flotilla.RolloutFilter{})
	if err != nil {
		s.error(w, r, err)
		return
	}
	var all []rolloutJSON
	for _, ro := range list {
		_, waves, err := s.core.GetRollout(r.Context(), c.p, c.tenant, ro.ID)
		if err != nil {
			continue
		}
		j, err := s.rolloutJSON(r, c, ro, waves)
		if err != nil {
			s.error(w, r, err)
			return
		}
		all = append(all, j)
	}
	pg, err := listOf(r, all, func(j rolloutJSON) Fields {
		return func(f string) ([]string, bool) {
			switch f {
			case "id":
				return []string{strconv.FormatInt(j.ID, 10)}, true
			case "name":
				return []string{j.Name}, true
			case "status":
				return []string{j.Status}, true
			case "description":
				return []string{j.Description}, true
			case "createdat":
				return []string{strconv.FormatInt(j.CreatedAt, 10)}, true
			}
			return nil, false
		}
	}, rolloutFilter, "id, name, status, description, createdAt", []sortKey{{field: "id"}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	if pg.Content == nil {
		pg.Content = []rolloutJSON{}
	}
	writeJSON(w, http.StatusOK, pg)
}

func (s *Server) getRollout(w http.ResponseWriter, r *http.Request, c call) {
	ro, waves, err := s.rollout(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out, err := s.rolloutJSON(r, c, ro, waves)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteRollout(w http.ResponseWriter, r *http.Request, c call) {
	ro, _, err := s.rollout(r, c)
	if err == nil {
		err = s.core.DeleteRollout(r.Context(), c.p, c.tenant, ro.ID)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rolloutOp(op string) handler {
	return func(w http.ResponseWriter, r *http.Request, c call) {
		ro, _, err := s.rollout(r, c)
		if err == nil {
			switch op {
			case "start":
				_, _, err = s.core.StartRollout(r.Context(), c.p, c.tenant, ro.ID)
			case "pause":
				_, _, err = s.core.ChangeRollout(r.Context(), c.p, c.tenant, ro.ID, rollout.OpPause)
			case "resume":
				_, _, err = s.core.ChangeRollout(r.Context(), c.p, c.tenant, ro.ID, rollout.OpResume)
			}
		}
		if err != nil {
			s.error(w, r, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

type groupJSON struct {
	audit
	ID                    int64          `json:"id"`
	Name                  string         `json:"name"`
	Description           string         `json:"description"`
	Status                string         `json:"status"`
	TotalTargets          int            `json:"totalTargets"`
	TotalTargetsPerStatus map[string]int `json:"totalTargetsPerStatus"`
	TargetFilterQuery     string         `json:"targetFilterQuery"`
	TargetPercentage      float64        `json:"targetPercentage"`
	SuccessCondition      condition      `json:"successCondition"`
	SuccessAction         reaction       `json:"successAction"`
	ErrorCondition        *condition     `json:"errorCondition,omitempty"`
	ErrorAction           *reaction      `json:"errorAction,omitempty"`
	Links                 links          `json:"_links"`
}

func groupStatus(st flotilla.WaveStatus) string {
	switch st {
	case flotilla.WaveSucceeded:
		return "finished"
	case flotilla.WaveFailed, flotilla.WaveAborted:
		return "error"
	}
	return string(st)
}

// groups are the rollout's waves as hawkBit's deployment groups, numbered
// from 1 within the rollout.
func (s *Server) groups(r *http.Request, c call, ro flotilla.Rollout, waves []flotilla.Wave) []groupJSON {
	num, _ := s.core.Store.RolloutNumber(r.Context(), c.tenant, ro.ID)
	out := []groupJSON{}
	for _, w := range waves {
		g := groupJSON{audit: auditOf(ro.CreatedAt, ro.UpdatedAt), ID: int64(w.Index + 1), Name: w.Name, Status: groupStatus(w.Status),
			TotalTargets: w.Size, TotalTargetsPerStatus: perStatus(w.Counts),
			SuccessCondition: condition{Condition: "THRESHOLD", Expression: strconv.FormatFloat(ro.Policy.SuccessPct(), 'f', -1, 64)},
			SuccessAction:    reaction{Action: "NEXTGROUP"},
			Links:            links{"self": {s.base(r) + "/rollouts/" + strconv.FormatInt(num, 10) + "/deploygroups/" + strconv.Itoa(w.Index+1)}}}
		if ro.Total > 0 {
			g.TargetPercentage = float64(w.Size) * 100 / float64(ro.Total)
		}
		if ro.Policy.ErrorThreshold != nil {
			g.ErrorCondition = &condition{Condition: "THRESHOLD", Expression: strconv.FormatFloat(*ro.Policy.ErrorThreshold, 'f', -1, 64)}
			g.ErrorAction = &reaction{Action: strings.ToUpper(ro.Policy.OnError())}
		}
		out = append(out, g)
	}
	return out
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request, c call) {
	ro, waves, err := s.rollout(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	pg, err := listOf(r, s.groups(r, c, ro, waves), func(g groupJSON) Fields {
		return func(f string) ([]string, bool) {
			switch f {
			case "id":
				return []string{strconv.FormatInt(g.ID, 10)}, true
			case "name":
				return []string{g.Name}, true
			case "status":
				return []string{g.Status}, true
			}
			return nil, false
		}
	}, knownIn("id", "name", "status"), "id, name, status", []sortKey{{field: "id"}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pg)
}

func (s *Server) group(r *http.Request, c call) (flotilla.Rollout, groupJSON, error) {
	ro, waves, err := s.rollout(r, c)
	if err != nil {
		return ro, groupJSON{}, err
	}
	gid, err := pathInt(r, "groupId", "RolloutGroup")
	if err != nil {
		return ro, groupJSON{}, err
	}
	for _, g := range s.groups(r, c, ro, waves) {
		if g.ID == gid {
			return ro, g, nil
		}
	}
	return ro, groupJSON{}, flotilla.Errorf(flotilla.ENotFound, "RolloutGroup with given identifier {%d} does not exist.", gid)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, c call) {
	_, g, err := s.group(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) groupTargets(w http.ResponseWriter, r *http.Request, c call) {
	ro, g, err := s.group(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	wave := int(g.ID - 1)
	rds, err := s.core.RolloutDevices(r.Context(), c.p, c.tenant, ro.ID, flotilla.RolloutDeviceFilter{Wave: &wave, Limit: 100000})
	if err != nil {
		s.error(w, r, err)
		return
	}
	settings := s.settings(r.Context(), c)
	var all []target
	for _, rd := range rds {
		d, err := s.core.Store.GetDevice(r.Context(), c.tenant, rd.DeviceID)
		if err != nil {
			continue
		}
		all = append(all, s.targetJSON(r, c, d, nil, settings))
	}
	pg, err := listOf(r, all, func(t target) Fields {
		return func(f string) ([]string, bool) {
			if f == "id" || f == "controllerid" {
				return []string{t.ControllerID}, true
			}
			return nil, false
		}
	}, knownIn("id", "controllerid"), "id, controllerId", []sortKey{{field: "id"}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	if pg.Content == nil {
		pg.Content = []target{}
	}
	writeJSON(w, http.StatusOK, pg)
}
