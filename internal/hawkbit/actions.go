package hawkbit

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/flotilla-ota/flotilla"
)

type window struct {
	Schedule    string `json:"schedule"`
	Duration    string `json:"duration"`
	Timezone    string `json:"timezone"`
	NextStartAt *int64 `json:"nextStartAt,omitempty"`
}

type action struct {
	audit
	ID                int64   `json:"id"`
	Type              string  `json:"type"`
	Status            string  `json:"status"`
	DetailStatus      string  `json:"detailStatus"`
	ForceType         string  `json:"forceType"`
	ForceTime         *int64  `json:"forceTime,omitempty"`
	Rollout           *int64  `json:"rollout,omitempty"`
	RolloutName       string  `json:"rolloutName,omitempty"`
	MaintenanceWindow *window `json:"maintenanceWindow,omitempty"`
	Links             links   `json:"_links"`
}

// detailStatus is hawkBit's action status for a deployment state.
func detailStatus(d flotilla.Deployment) string {
	return hawkbitStatus(d.State, d.RetrievedAt != nil)
}

// hawkbitStatus is hawkBit's name for a state; a pending deployment the
// device has fetched is "retrieved".
func hawkbitStatus(st flotilla.DeploymentState, retrieved bool) string {
	switch st {
	case flotilla.StateScheduled:
		return "scheduled"
	case flotilla.StatePending:
		if retrieved {
			return "retrieved"
		}
		return "running"
	case flotilla.StateDownloading:
		return "download"
	case flotilla.StateDownloaded:
		return "downloaded"
	case flotilla.StateSucceeded:
		return "finished"
	case flotilla.StateFailed, flotilla.StateTimedOut, flotilla.StateRejected:
		return "error"
	case flotilla.StateCancelRequested:
		return "canceling"
	case flotilla.StateCanceled, flotilla.StateSkipped:
		return "canceled"
	}
	return "running"
}

func (s *Server) actionJSON(r *http.Request, c call, d flotilla.Deployment) action {
	self := s.base(r) + "/targets/" + d.DeviceID + "/actions/" + strconv.FormatInt(d.ID, 10)
	a := action{audit: auditOf(d.CreatedAt, d.UpdatedAt), ID: d.ID, Type: "update", Status: "pending", DetailStatus: detailStatus(d),
		ForceType: string(d.Type), ForceTime: msPtr(d.ForceAt),
		Links: links{"self": {self}, "target": {s.base(r) + "/targets/" + d.DeviceID}, "status": {self + "/status?offset=0&limit=50&sort=id%3ADESC"},
			"distributionset": {s.base(r) + "/distributionsets/" + strconv.FormatInt(d.ArtifactID, 10)}}}
	if d.State.Terminal() {
		a.Status = "finished"
	}
	if d.State == flotilla.StateCancelRequested || d.State == flotilla.StateCanceled {
		a.Type = "cancel"
	}
	if d.Window != nil {
		a.MaintenanceWindow = &window{Schedule: d.Window.Schedule, Duration: d.Window.Duration, Timezone: d.Window.Timezone}
	}
	if d.RolloutID != "" {
		if num, err := s.core.Store.RolloutNumber(r.Context(), c.tenant, d.RolloutID); err == nil {
			a.Rollout = &num
			a.Links["rollout"] = link{s.base(r) + "/rollouts/" + strconv.FormatInt(num, 10)}
			if ro, _, err := s.core.Store.GetRollout(r.Context(), c.tenant, d.RolloutID); err == nil {
				a.RolloutName = ro.Name
			}
		}
	}
	return a
}

var actionFilter = knownIn("id", "status", "detailstatus", "forcetype", "type", "createdat", "lastmodifiedat", "rollout.name", "distributionset.name", "distributionset.version")

const actionFilterNames = "id, status, detailStatus, forceType, type, createdAt, lastModifiedAt, rollout.name, distributionSet.name, distributionSet.version"

func actionFields(a action, d flotilla.Deployment) Fields {
	return func(f string) ([]string, bool) {
		switch f {
		case "id":
			return []string{strconv.FormatInt(a.ID, 10)}, true
		case "status":
			return []string{a.Status}, true
		case "detailstatus":
			return []string{a.DetailStatus}, true
		case "forcetype":
			return []string{a.ForceType}, true
		case "type":
			return []string{a.Type}, true
		case "createdat":
			return []string{strconv.FormatInt(a.CreatedAt, 10)}, true
		case "lastmodifiedat":
			return []string{strconv.FormatInt(a.LastModifiedAt, 10)}, true
		case "rollout.name":
			return []string{a.RolloutName}, a.RolloutName != ""
		case "distributionset.name":
			return []string{d.ArtifactName}, true
		case "distributionset.version":
			return []string{d.ArtifactVersion}, true
		}
		return nil, false
	}
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request, c call) {
	id := r.PathValue("id")
	if _, err := s.device(r.Context(), c, id); err != nil {
		s.error(w, r, err)
		return
	}
	deps, err := s.core.ListDeviceDeployments(r.Context(), c.p, c.tenant, id, 1000)
	if err != nil {
		s.error(w, r, err)
		return
	}
	type row struct {
		a action
		d flotilla.Deployment
	}
	rows := make([]row, len(deps))
	for i, d := range deps {
		rows[i] = row{s.actionJSON(r, c, d), d}
	}
	pg, err := listOf(r, rows, func(x row) Fields { return actionFields(x.a, x.d) }, actionFilter, actionFilterNames, []sortKey{{field: "id", desc: true}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := []action{}
	for _, x := range pg.Content.([]row) {
		out = append(out, x.a)
	}
	pg.Content = out
	writeJSON(w, http.StatusOK, pg)
}

func (s *Server) deployment(r *http.Request, c call) (flotilla.Deployment, error) {
	id := r.PathValue("id")
	if _, err := s.device(r.Context(), c, id); err != nil {
		return flotilla.Deployment{}, err
	}
	aid, err := pathInt(r, "actionId", "Action")
	if err != nil {
		return flotilla.Deployment{}, err
	}
	d, err := s.core.GetDeviceDeployment(r.Context(), c.p, c.tenant, id, aid)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return d, flotilla.Errorf(flotilla.ENotFound, "Action with given identifier {%d} does not exist.", aid)
	}
	return d, err
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request, c call) {
	d, err := s.deployment(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.actionJSON(r, c, d))
}

// cancelAction cancels an action; with force=true it force-quits an action
// whose cancel the device never confirmed.
func (s *Server) cancelAction(w http.ResponseWriter, r *http.Request, c call) {
	d, err := s.deployment(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if r.URL.Query().Get("force") == "true" {
		_, err = s.core.ForceQuitDeployment(r.Context(), c.p, c.tenant, d.DeviceID, d.ID)
	} else {
		_, err = s.core.CancelDeployment(r.Context(), c.p, c.tenant, d.DeviceID, d.ID)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type actionStatusEntry struct {
	ID         int64    `json:"id"`
	Type       string   `json:"type"`
	Messages   []string `json:"messages"`
	ReportedAt int64    `json:"reportedAt"`
	Timestamp  int64    `json:"timestamp"`
	Code       *int     `json:"code,omitempty"`
}

// statusType is hawkBit's name for one history entry.
func statusType(ev flotilla.DeploymentEvent) string {
	return hawkbitStatus(ev.State, slices.ContainsFunc(ev.Details, func(d string) bool { return strings.Contains(d, "retrieved") }))
}

func (s *Server) actionStatus(w http.ResponseWriter, r *http.Request, c call) {
	d, err := s.deployment(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	entries := make([]actionStatusEntry, len(d.History))
	for i, ev := range d.History {
		msgs := ev.Details
		if msgs == nil {
			msgs = []string{}
		}
		entries[i] = actionStatusEntry{ID: int64(i + 1), Type: statusType(ev), Messages: msgs, ReportedAt: ms(ev.At), Timestamp: ms(ev.At), Code: ev.Code}
	}
	pg, err := listOf(r, entries, func(e actionStatusEntry) Fields {
		return func(f string) ([]string, bool) {
			switch f {
			case "id":
				return []string{strconv.FormatInt(e.ID, 10)}, true
			case "reportedat":
				return []string{strconv.FormatInt(e.ReportedAt, 10)}, true
			case "type":
				return []string{e.Type}, true
			}
			return nil, false
		}
	}, knownIn("id", "reportedat", "type"), "id, reportedAt, type", []sortKey{{field: "id", desc: true}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pg)
}
