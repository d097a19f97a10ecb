package hawkbit

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
)

func (s *Server) setRoutes() {
	s.handle("POST "+Prefix+"/distributionsets", s.createSets)
	s.handle("GET "+Prefix+"/distributionsets", s.listSets)
	s.handle("GET "+Prefix+"/distributionsets/{id}", s.getSet)
	s.handle("DELETE "+Prefix+"/distributionsets/{id}", s.deleteSet)
	s.handle("POST "+Prefix+"/distributionsets/{id}/assignedTargets", s.assignSet)
	s.handle("GET "+Prefix+"/distributionsets/{id}/assignedTargets", s.setTargets)
	s.handle("GET "+Prefix+"/distributionsettypes", s.setTypes)
}

// setTypes are hawkBit's standard distribution set types.
var setTypes = []struct {
	ID        int64
	Key, Name string
}{{1, "os", "OS only"}, {2, "os_app", "OS with app(s)"}, {3, "app", "App(s) only"}}

func (s *Server) setTypes(w http.ResponseWriter, r *http.Request, c call) {
	type typeJSON struct {
		audit
		ID          int64  `json:"id"`
		Key         string `json:"key"`
		Name        string `json:"name"`
		Description string `json:"description"`
		Deleted     bool   `json:"deleted"`
		Links       links  `json:"_links"`
	}
	out := []typeJSON{}
	for _, t := range setTypes {
		out = append(out, typeJSON{ID: t.ID, Key: t.Key, Name: t.Name, Description: t.Name,
			Links: links{"self": {s.base(r) + "/distributionsettypes/" + strconv.FormatInt(t.ID, 10)}}})
	}
	writeJSON(w, http.StatusOK, paged{Content: out, Total: len(out), Size: len(out)})
}

type setJSON struct {
	audit
	ID                    int64        `json:"id"`
	Name                  string       `json:"name"`
	Version               string       `json:"version"`
	Description           string       `json:"description"`
	Type                  string       `json:"type"`
	TypeName              string       `json:"typeName"`
	Modules               []moduleJSON `json:"modules"`
	RequiredMigrationStep bool         `json:"requiredMigrationStep"`
	Complete              bool         `json:"complete"`
	Deleted               bool         `json:"deleted"`
	Valid                 bool         `json:"valid"`
	Locked                bool         `json:"locked"`
	Links                 links        `json:"_links"`
}

// setJSON describes a release as a distribution set.
func (s *Server) setJSON(r *http.Request, c call, a flotilla.Artifact) (setJSON, error) {
	if a.Modules == nil {
		mods, err := s.core.Store.ReleaseModules(r.Context(), c.tenant, a.ID)
		if err != nil {
			return setJSON{}, err
		}
		a.Modules = mods
	}
	self := s.base(r) + "/distributionsets/" + strconv.FormatInt(a.ID, 10)
	out := setJSON{audit: auditOf(a.CreatedAt, a.CreatedAt), ID: a.ID, Name: a.Name, Version: a.Version, Description: a.Description,
		Type: a.Type, TypeName: a.Type, Modules: []moduleJSON{}, Complete: len(a.Modules) > 0, Valid: true, Locked: true,
		Links: links{"self": {self}, "modules": {self + "/assignedSM"}, "assignedTargets": {self + "/assignedTargets"}, "type": {s.base(r) + "/distributionsettypes"}}}
	for _, t := range setTypes {
		if t.Key == a.Type {
			out.TypeName = t.Name
		}
	}
	for _, m := range a.Modules {
		out.Modules = append(out.Modules, s.moduleJSON(r, m, true))
	}
	return out, nil
}

func (s *Server) release(ctx context.Context, c call, id int64) (flotilla.Artifact, error) {
	a, err := s.core.GetRelease(ctx, c.p, c.tenant, id)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return a, flotilla.Errorf(flotilla.ENotFound, "DistributionSet with given identifier {%d} does not exist.", id)
	}
	return a, err
}

type setBody struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Type        string `json:"type"`
	Description string `json:"description"`
	Modules     []struct {
		ID int64 `json:"id"`
	} `json:"modules"`
}

func (s *Server) createSets(w http.ResponseWriter, r *http.Request, c call) {
	var body []setBody
	if err := decode(r, &body); err != nil {
		s.error(w, r, err)
		return
	}
	if len(body) == 0 || len(body) > 500 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "send a JSON list of 1 to 500 distribution sets"))
		return
	}
	out := []setJSON{}
	for _, b := range body {
		nr := core.NewRelease{Tenant: c.tenant, Name: b.Name, Version: b.Version, Type: strings.ToLower(b.Type), Description: b.Description}
		for _, m := range b.Modules {
			nr.Modules = append(nr.Modules, m.ID)
		}
		a, err := s.core.CreateRelease(r.Context(), c.p, nr)
		if err != nil {
			s.error(w, r, err)
			return
		}
		ds, err := s.setJSON(r, c, a)
		if err != nil {
			s.error(w, r, err)
			return
		}
		out = append(out, ds)
	}
	writeJSON(w, http.StatusCreated, out)
}

var setFilter = knownIn("id", "name", "version", "type", "description", "createdat")

func (s *Server) listSets(w http.ResponseWriter, r *http.Request, c call) {
	list, err := s.core.ListArtifacts(r.Context(), c.p, core.ArtifactQuery{Tenant: c.tenant})
	if err != nil {
		s.error(w, r, err)
		return
	}
	pg, err := listOf(r, list, func(a flotilla.Artifact) Fields {
		return func(f string) ([]string, bool) {
			switch f {
			case "id":
				return []string{strconv.FormatInt(a.ID, 10)}, true
			case "name":
				return []string{a.Name}, true
			case "version":
				return []string{a.Version}, true
			case "type":
				return []string{a.Type}, true
			case "description":
				return []string{a.Description}, true
			case "createdat":
				return []string{strconv.FormatInt(a.CreatedAt.UnixMilli(), 10)}, true
			}
			return nil, false
		}
	}, setFilter, "id, name, version, type, description, createdAt", []sortKey{{field: "id"}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := []setJSON{}
	for _, a := range pg.Content.([]flotilla.Artifact) {
		ds, err := s.setJSON(r, c, a)
		if err != nil {
			s.error(w, r, err)
			return
		}
		out = append(out, ds)
	}
	pg.Content = out
	writeJSON(w, http.StatusOK, pg)
}

func (s *Server) getSet(w http.ResponseWriter, r *http.Request, c call) {
	id, err := pathInt(r, "id", "DistributionSet")
	if err != nil {
		s.error(w, r, err)
		return
	}
	a, err := s.release(r.Context(), c, id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	ds, err := s.setJSON(r, c, a)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

func (s *Server) deleteSet(w http.ResponseWriter, r *http.Request, c call) {
	id, err := pathInt(r, "id", "DistributionSet")
	if err == nil {
		if _, err = s.release(r.Context(), c, id); err == nil {
			err = s.core.DeleteRelease(r.Context(), c.p, c.tenant, id)
		}
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// assignSet assigns the set to a list of targets, each with its own type,
// force time and maintenance window.
func (s *Server) assignSet(w http.ResponseWriter, r *http.Request, c call) {
	id, err := pathInt(r, "id", "DistributionSet")
	if err != nil {
		s.error(w, r, err)
		return
	}
	a, err := s.release(r.Context(), c, id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var body []assignment
	if err := decode(r, &body); err != nil {
		s.error(w, r, err)
		return
	}
	if len(body) == 0 || len(body) > 10000 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "send a JSON list of 1 to 10000 targets"))
		return
	}
	res := assignResult{AssignedActions: []assignedAction{}}
	for _, as := range body {
		var target string
		if err := json.Unmarshal(as.ID, &target); err != nil {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "id must be a target's controllerId"))
			return
		}
		if err := s.assign(r, c, target, a, as, &res); err != nil {
			s.error(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// setTargets lists the targets whose newest action is this set's.
func (s *Server) setTargets(w http.ResponseWriter, r *http.Request, c call) {
	id, err := pathInt(r, "id", "DistributionSet")
	if err != nil {
		s.error(w, r, err)
		return
	}
	if _, err := s.release(r.Context(), c, id); err != nil {
		s.error(w, r, err)
		return
	}
	ds, latest, err := s.core.AllDevices(r.Context(), c.p, c.tenant)
	if err != nil {
		s.error(w, r, err)
		return
	}
	type row struct {
		d flotilla.Device
		l *flotilla.Deployment
	}
	var rows []row
	for _, d := range ds {
		if dep, ok := latest[d.ID]; ok && dep.ArtifactID == id && dep.State != flotilla.StateCanceled {
			rows = append(rows, row{d, &dep})
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
