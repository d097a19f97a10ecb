package hawkbit

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
)

func (s *Server) targetRoutes() {
	s.handle("POST "+Prefix+"/targets", s.createTargets)
	s.handle("GET "+Prefix+"/targets", s.listTargets)
	s.handle("GET "+Prefix+"/targets/{id}", s.getTarget)
	s.handle("PUT "+Prefix+"/targets/{id}", s.updateTarget)
	s.handle("DELETE "+Prefix+"/targets/{id}", s.deleteTarget)
	s.handle("GET "+Prefix+"/targets/{id}/attributes", s.targetAttributes)
	s.handle("GET "+Prefix+"/targets/{id}/assignedDS", s.assignedDS)
	s.handle("POST "+Prefix+"/targets/{id}/assignedDS", s.assignToTarget)
	s.handle("GET "+Prefix+"/targets/{id}/installedDS", s.installedDS)
	s.handle("GET "+Prefix+"/targets/{id}/actions", s.listActions)
	s.handle("GET "+Prefix+"/targets/{id}/actions/{actionId}", s.getAction)
	s.handle("DELETE "+Prefix+"/targets/{id}/actions/{actionId}", s.cancelAction)
	s.handle("GET "+Prefix+"/targets/{id}/actions/{actionId}/status", s.actionStatus)
}

// pollStatus is hawkBit's view of a target's polling.
type pollStatus struct {
	LastRequestAt         int64 `json:"lastRequestAt"`
	NextExpectedRequestAt int64 `json:"nextExpectedRequestAt"`
	Overdue               bool  `json:"overdue"`
}

type target struct {
	audit
	ControllerID            string      `json:"controllerId"`
	Name                    string      `json:"name"`
	Description             string      `json:"description"`
	Address                 string      `json:"address,omitempty"`
	SecurityToken           string      `json:"securityToken,omitempty"`
	RequestAttributes       bool        `json:"requestAttributes"`
	UpdateStatus            string      `json:"updateStatus"`
	LastControllerRequestAt *int64      `json:"lastControllerRequestAt,omitempty"`
	InstalledAt             *int64      `json:"installedAt,omitempty"`
	PollStatus              *pollStatus `json:"pollStatus,omitempty"`
	Links                   links       `json:"_links"`
}

// updateStatus is hawkBit's target update status: unknown (never polled,
// nothing assigned), registered (polled, nothing assigned), pending (an
// action open), in_sync, error (the last action failed).
func updateStatus(d flotilla.Device, latest *flotilla.Deployment) string {
	if latest == nil {
		if d.LastSeenAt == nil {
			return "unknown"
		}
		return "registered"
	}
	switch {
	case latest.State.Active() || latest.State == flotilla.StateScheduled:
		return "pending"
	case latest.State == flotilla.StateSucceeded:
		return "in_sync"
	case latest.State == flotilla.StateFailed, latest.State == flotilla.StateTimedOut, latest.State == flotilla.StateRejected:
		return "error"
	}
	if d.Version != "" {
		return "in_sync"
	}
	return "registered"
}

func (s *Server) targetJSON(r *http.Request, c call, d flotilla.Device, latest *flotilla.Deployment, settings flotilla.TenantSettings) target {
	self := s.base(r) + "/targets/" + d.ID
	t := target{audit: auditOf(d.CreatedAt, d.UpdatedAt), ControllerID: d.ID, Name: d.Name, Description: d.Description, Address: d.Address,
		SecurityToken: s.core.DeviceToken(c.p, d), UpdateStatus: updateStatus(d, latest), LastControllerRequestAt: msPtr(d.LastSeenAt),
		Links: links{"self": {self}, "assignedDS": {self + "/assignedDS"}, "installedDS": {self + "/installedDS"},
			"attributes": {self + "/attributes"}, "actions": {self + "/actions?offset=0&limit=50&sort=id%3ADESC"}}}
	if t.Name == "" {
		t.Name = d.ID
	}
	if d.LastSeenAt != nil {
		poll := s.core.PollInterval(settings)
		next := d.LastSeenAt.Add(poll)
		overdue := time.Duration(settings.PollingOverdueTime)
		if overdue <= 0 {
			overdue = poll
		}
		t.PollStatus = &pollStatus{LastRequestAt: d.LastSeenAt.UnixMilli(), NextExpectedRequestAt: next.UnixMilli(), Overdue: s.core.Now().After(next.Add(overdue))}
	}
	return t
}

// targetFields are what FIQL can filter targets on.
var targetFilter = knownIn("id", "controllerid", "name", "description", "updatestatus", "address", "createdat", "lastmodifiedat",
	"lastcontrollerrequestat", "tag", "attribute.*", "label.*", "assignedds.name", "assignedds.version", "installedds.name", "installedds.version")

const targetFilterNames = "id, controllerId, name, description, updateStatus, address, createdAt, lastModifiedAt, lastControllerRequestAt, tag (a label key), label.KEY, attribute.KEY, assignedDS.name, assignedDS.version, installedDS.name, installedDS.version"

func deviceFields(d flotilla.Device, latest *flotilla.Deployment) Fields {
	return func(f string) ([]string, bool) {
		switch f {
		case "id", "controllerid":
			return []string{d.ID}, true
		case "name":
			if d.Name == "" {
				return []string{d.ID}, true
			}
			return []string{d.Name}, true
		case "description":
			return []string{d.Description}, true
		case "updatestatus":
			return []string{updateStatus(d, latest)}, true
		case "address":
			return []string{d.Address}, true
		case "createdat":
			return []string{strconv.FormatInt(d.CreatedAt.UnixMilli(), 10)}, true
		case "lastmodifiedat":
			return []string{strconv.FormatInt(d.UpdatedAt.UnixMilli(), 10)}, true
		case "lastcontrollerrequestat":
			if d.LastSeenAt == nil {
				return nil, false
			}
			return []string{strconv.FormatInt(d.LastSeenAt.UnixMilli(), 10)}, true
		case "tag":
			var keys []string
			for k := range d.Labels {
				keys = append(keys, k)
			}
			return keys, len(keys) > 0
		case "assignedds.name", "assignedds.version":
			if latest == nil {
				return nil, false
			}
			if f == "assignedds.name" {
				return []string{latest.ArtifactName}, true
			}
			return []string{latest.ArtifactVersion}, true
		case "installedds.name", "installedds.version":
			if latest == nil || latest.State != flotilla.StateSucceeded {
				if d.Version == "" || f == "installedds.name" {
					return nil, false
				}
				return []string{d.Version}, true
			}
			if f == "installedds.name" {
				return []string{latest.ArtifactName}, true
			}
			return []string{latest.ArtifactVersion}, true
		}
		if k, ok := strings.CutPrefix(f, "attribute."); ok {
			for ak, v := range d.Attributes {
				if strings.EqualFold(ak, k) {
					return []string{v}, true
				}
			}
			return nil, false
		}
		if k, ok := strings.CutPrefix(f, "label."); ok {
			for lk, v := range d.Labels {
				if strings.EqualFold(lk, k) {
					return []string{v}, true
				}
			}
		}
		return nil, false
	}
}

// matchTargets returns the ids of the tenant's devices a FIQL query
// matches (hawkBit's targetFilterQuery).
func (s *Server) matchTargets(ctx context.Context, c call, q string) ([]string, error) {
	f, err := ParseFilter(q, targetFilter, targetFilterNames)
	if err != nil {
		return nil, err
	}
	ds, latest, err := s.core.AllDevices(ctx, c.p, c.tenant)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range ds {
		var l *flotilla.Deployment
		if dep, ok := latest[d.ID]; ok {
			l = &dep
		}
		if f.Match(deviceFields(d, l)) {
			ids = append(ids, d.ID)
		}
	}
	return ids, nil
}

func (s *Server) settings(ctx context.Context, c call) flotilla.TenantSettings {
	t, err := s.core.Store.GetTenant(ctx, c.tenant)
	if err != nil {
		return flotilla.TenantSettings{}
	}
	return t.Settings
}

func (s *Server) listTargets(w http.ResponseWriter, r *http.Request, c call) {
	ds, latest, err := s.core.AllDevices(r.Context(), c.p, c.tenant)
	if err != nil {
		s.error(w, r, err)
		return
	}
	type row struct {
		d flotilla.Device
		l *flotilla.Deployment
	}
	rows := make([]row, len(ds))
	for i, d := range ds {
		rows[i].d = d
		if dep, ok := latest[d.ID]; ok {
			rows[i].l = &dep
		}
	}
	pg, err := listOf(r, rows, func(x row) Fields { return deviceFields(x.d, x.l) }, targetFilter, targetFilterNames, []sortKey{{field: "id"}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	settings := s.settings(r.Context(), c)
	out := []target{}
	for _, x := range pg.Content.([]row) {
		out = append(out, s.targetJSON(r, c, x.d, x.l, settings))
	}
	pg.Content = out
	writeJSON(w, http.StatusOK, pg)
}

// targetNotFound is hawkBit's message for an unknown target.
func targetNotFound(id string) error {
	return flotilla.Errorf(flotilla.ENotFound, "Target with given identifier {%s} does not exist.", id)
}

func (s *Server) device(ctx context.Context, c call, id string) (flotilla.Device, error) {
	d, err := s.core.GetDevice(ctx, c.p, c.tenant, id)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return d, targetNotFound(id)
	}
	return d, err
}

func (s *Server) getTarget(w http.ResponseWriter, r *http.Request, c call) {
	d, err := s.device(r.Context(), c, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	deps, err := s.core.ListDeviceDeployments(r.Context(), c.p, c.tenant, d.ID, 50)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var latest *flotilla.Deployment
	if len(deps) > 0 {
		latest = &deps[0]
	}
	t := s.targetJSON(r, c, d, latest, s.settings(r.Context(), c))
	for _, dep := range deps {
		if dep.State == flotilla.StateSucceeded {
			t.InstalledAt = msPtr(dep.FinishedAt)
			break
		}
	}
	if on, err := s.core.Store.AttributesRequested(r.Context(), c.tenant, d.ID); err == nil {
		t.RequestAttributes = on
	}
	writeJSON(w, http.StatusOK, t)
}

type targetBody struct {
	ControllerID      string  `json:"controllerId"`
	Name              *string `json:"name"`
	Description       *string `json:"description"`
	Address           *string `json:"address"`
	SecurityToken     string  `json:"securityToken"`
	RequestAttributes *bool   `json:"requestAttributes"`
}

func (s *Server) createTargets(w http.ResponseWriter, r *http.Request, c call) {
	var body []targetBody
	if err := decode(r, &body); err != nil {
		s.error(w, r, err)
		return
	}
	if len(body) == 0 || len(body) > 500 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "send a JSON list of 1 to 500 targets"))
		return
	}
	settings := s.settings(r.Context(), c)
	out := []target{}
	for _, b := range body {
		nd := core.NewDevice{Tenant: c.tenant, ID: b.ControllerID, Token: b.SecurityToken}
		if b.Name != nil && *b.Name != b.ControllerID {
			nd.Name = *b.Name
		}
		if b.Description != nil {
			nd.Description = *b.Description
		}
		if b.Address != nil {
			nd.Address = *b.Address
		}
		d, cred, err := s.core.CreateDevice(r.Context(), c.p, nd)
		if err != nil {
			s.error(w, r, err)
			return
		}
		t := s.targetJSON(r, c, d, nil, settings)
		t.SecurityToken = cred.Token // shown once, as the native API does
		out = append(out, t)
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) updateTarget(w http.ResponseWriter, r *http.Request, c call) {
	id := r.PathValue("id")
	if _, err := s.device(r.Context(), c, id); err != nil {
		s.error(w, r, err)
		return
	}
	var b targetBody
	if err := decode(r, &b); err != nil {
		s.error(w, r, err)
		return
	}
	patch := flotilla.DevicePatch{Name: b.Name, Description: b.Description}
	if b.Address != nil {
		patch.Address = b.Address
	}
	if _, _, err := s.core.UpdateDevice(r.Context(), c.p, c.tenant, id, patch); err != nil {
		s.error(w, r, err)
		return
	}
	if b.SecurityToken != "" {
		if _, err := s.core.SetDeviceToken(r.Context(), c.p, c.tenant, id, b.SecurityToken); err != nil {
			s.error(w, r, err)
			return
		}
	}
	if b.RequestAttributes != nil && *b.RequestAttributes {
		if err := s.core.SetAttributesRequested(r.Context(), c.p, c.tenant, id); err != nil {
			s.error(w, r, err)
			return
		}
	}
	s.getTarget(w, r, c)
}

func (s *Server) deleteTarget(w http.ResponseWriter, r *http.Request, c call) {
	id := r.PathValue("id")
	err := s.core.DeleteDevice(r.Context(), c.p, c.tenant, id)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		err = targetNotFound(id)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) targetAttributes(w http.ResponseWriter, r *http.Request, c call) {
	d, err := s.device(r.Context(), c, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	attrs := d.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	writeJSON(w, http.StatusOK, attrs)
}

// assignedDS is the release of the target's newest action; 204 without.
func (s *Server) assignedDS(w http.ResponseWriter, r *http.Request, c call) {
	s.targetDS(w, r, c, func(flotilla.Deployment) bool { return true })
}

// installedDS is the release the target last installed; 204 without.
func (s *Server) installedDS(w http.ResponseWriter, r *http.Request, c call) {
	s.targetDS(w, r, c, func(d flotilla.Deployment) bool { return d.State == flotilla.StateSucceeded })
}

func (s *Server) targetDS(w http.ResponseWriter, r *http.Request, c call, pick func(flotilla.Deployment) bool) {
	d, err := s.device(r.Context(), c, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	deps, err := s.core.ListDeviceDeployments(r.Context(), c.p, c.tenant, d.ID, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	for _, dep := range deps {
		if dep.State == flotilla.StateCanceled || !pick(dep) {
			continue
		}
		a, err := s.core.Store.GetArtifactByID(r.Context(), c.tenant, dep.ArtifactID)
		if err != nil {
			continue
		}
		ds, err := s.setJSON(r, c, a)
		if err != nil {
			s.error(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, ds)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// assignment is one entry of an assignment request: to a target (by DS)
// or of a DS (by target).
type assignment struct {
	ID                json.RawMessage `json:"id"`
	Type              string          `json:"type"`
	ForceTime         int64           `json:"forcetime"`
	Weight            *int            `json:"weight"`
	MaintenanceWindow *struct {
		Schedule string `json:"schedule"`
		Duration string `json:"duration"`
		Timezone string `json:"timezone"`
	} `json:"maintenanceWindow"`
}

type assignResult struct {
	Assigned        int              `json:"assigned"`
	AlreadyAssigned int              `json:"alreadyAssigned"`
	AssignedActions []assignedAction `json:"assignedActions"`
	Total           int              `json:"total"`
}

type assignedAction struct {
	ID    int64 `json:"id"`
	Links links `json:"_links"`
}

// assign gives device the release, unless its open action already runs
// that release (hawkBit's alreadyAssigned).
func (s *Server) assign(r *http.Request, c call, deviceID string, a flotilla.Artifact, as assignment, res *assignResult) error {
	// Checked first: an assignment already in place must not answer a
	// caller who may not assign.
	if err := c.p.Require(flotilla.ScopeDevicesWrite); err != nil {
		return err
	}
	if _, err := s.device(r.Context(), c, deviceID); err != nil {
		return err
	}
	deps, err := s.core.ListDeviceDeployments(r.Context(), c.p, c.tenant, deviceID, 20)
	if err != nil {
		return err
	}
	res.Total++
	for _, d := range deps {
		if (d.State.Active() || d.State == flotilla.StateScheduled) && d.ArtifactID == a.ID {
			res.AlreadyAssigned++
			return nil
		}
	}
	req := core.AssignRequest{Tenant: c.tenant, DeviceID: deviceID, ArtifactName: a.Name, ArtifactVersion: a.Version, Type: as.Type}
	if as.Type == "" {
		req.Type = string(flotilla.TypeForced)
	}
	if as.ForceTime > 0 {
		t := time.UnixMilli(as.ForceTime).UTC()
		req.ForceAt = &t
	}
	if mw := as.MaintenanceWindow; mw != nil {
		req.Window = &flotilla.MaintenanceWindow{Schedule: mw.Schedule, Duration: mw.Duration, Timezone: mw.Timezone}
	}
	d, err := s.core.AssignDeployment(r.Context(), c.p, req)
	if err != nil {
		return err
	}
	res.Assigned++
	res.AssignedActions = append(res.AssignedActions, assignedAction{ID: d.ID, Links: links{"self": {s.base(r) + "/targets/" + deviceID + "/actions/" + strconv.FormatInt(d.ID, 10)}}})
	return nil
}

func (s *Server) assignToTarget(w http.ResponseWriter, r *http.Request, c call) {
	var as assignment
	if err := decode(r, &as); err != nil {
		s.error(w, r, err)
		return
	}
	dsID, err := strconv.ParseInt(strings.Trim(string(as.ID), `"`), 10, 64)
	if err != nil {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "id must be the distribution set's id"))
		return
	}
	a, err := s.release(r.Context(), c, dsID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	res := assignResult{AssignedActions: []assignedAction{}}
	if err := s.assign(r, c, r.PathValue("id"), a, as, &res); err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
