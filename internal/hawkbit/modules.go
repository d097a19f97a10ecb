package hawkbit

import (
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func (s *Server) moduleRoutes() {
	s.handle("POST "+Prefix+"/softwaremodules", s.createModules)
	s.handle("GET "+Prefix+"/softwaremodules", s.listModules)
	s.handle("GET "+Prefix+"/softwaremodules/{id}", s.getModule)
	s.handle("DELETE "+Prefix+"/softwaremodules/{id}", s.deleteModule)
	s.handle("POST "+Prefix+"/softwaremodules/{id}/artifacts", s.uploadArtifact)
	s.handle("GET "+Prefix+"/softwaremodules/{id}/artifacts", s.listArtifacts)
	s.handle("GET "+Prefix+"/softwaremodules/{id}/artifacts/{artifactId}", s.getArtifact)
	s.handle("DELETE "+Prefix+"/softwaremodules/{id}/artifacts/{artifactId}", s.deleteArtifact)
	s.handle("GET "+Prefix+"/softwaremodules/{id}/artifacts/{artifactId}/download", s.downloadArtifact)
	s.handle("GET "+Prefix+"/softwaremoduletypes", s.moduleTypes)
	s.handle("GET "+Prefix+"/softwaremoduletypes/{id}", s.moduleType)
}

// moduleTypes are hawkBit's standard software module types, with fixed
// ids; modules may have any other lower-case type too.
var moduleTypes = []struct {
	ID             int64
	Key, Name      string
	MaxAssignments int
}{
	{1, "os", "OS", 1},
	{2, "application", "Application", 2147483647},
	{3, "firmware", "Firmware", 1},
	{4, "runtime", "Runtime", 1},
}

type moduleTypeJSON struct {
	audit
	ID             int64  `json:"id"`
	Key            string `json:"key"`
	Name           string `json:"name"`
	Description    string `json:"description"`
	MaxAssignments int    `json:"maxAssignments"`
	Deleted        bool   `json:"deleted"`
	Links          links  `json:"_links"`
}

func (s *Server) moduleTypes(w http.ResponseWriter, r *http.Request, c call) {
	out := []moduleTypeJSON{}
	for _, t := range moduleTypes {
		out = append(out, moduleTypeJSON{ID: t.ID, Key: t.Key, Name: t.Name, Description: t.Name + " software modules", MaxAssignments: t.MaxAssignments,
			Links: links{"self": {s.base(r) + "/softwaremoduletypes/" + strconv.FormatInt(t.ID, 10)}}})
	}
	writeJSON(w, http.StatusOK, paged{Content: out, Total: len(out), Size: len(out)})
}

func (s *Server) moduleType(w http.ResponseWriter, r *http.Request, c call) {
	id, err := pathInt(r, "id", "SoftwareModuleType")
	if err != nil {
		s.error(w, r, err)
		return
	}
	for _, t := range moduleTypes {
		if t.ID == id {
			writeJSON(w, http.StatusOK, moduleTypeJSON{ID: t.ID, Key: t.Key, Name: t.Name, Description: t.Name + " software modules", MaxAssignments: t.MaxAssignments,
				Links: links{"self": {s.base(r) + "/softwaremoduletypes/" + strconv.FormatInt(t.ID, 10)}}})
			return
		}
	}
	s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "SoftwareModuleType with given identifier {%d} does not exist.", id))
}

func typeName(key string) string {
	for _, t := range moduleTypes {
		if t.Key == key {
			return t.Name
		}
	}
	return key
}

type moduleJSON struct {
	audit
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	Type        string `json:"type"`
	TypeName    string `json:"typeName"`
	Vendor      string `json:"vendor"`
	Description string `json:"description"`
	Locked      bool   `json:"locked"`
	Deleted     bool   `json:"deleted"`
	Encrypted   bool   `json:"encrypted"`
	Links       links  `json:"_links"`
}

func (s *Server) moduleJSON(r *http.Request, m flotilla.Module, locked bool) moduleJSON {
	self := s.base(r) + "/softwaremodules/" + strconv.FormatInt(m.ID, 10)
	return moduleJSON{audit: auditOf(m.CreatedAt, m.CreatedAt), ID: m.ID, Name: m.Name, Version: m.Version, Type: m.Type, TypeName: typeName(m.Type),
		Vendor: m.Vendor, Description: m.Description, Locked: locked,
		Links: links{"self": {self}, "artifacts": {self + "/artifacts"}, "type": {s.base(r) + "/softwaremoduletypes"}}}
}

type moduleBody struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Type        string `json:"type"`
	Vendor      string `json:"vendor"`
	Description string `json:"description"`
}

func (s *Server) createModules(w http.ResponseWriter, r *http.Request, c call) {
	var body []moduleBody
	if err := decode(r, &body); err != nil {
		s.error(w, r, err)
		return
	}
	if len(body) == 0 || len(body) > 500 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "send a JSON list of 1 to 500 software modules"))
		return
	}
	out := []moduleJSON{}
	for _, b := range body {
		m, err := s.core.CreateModule(r.Context(), c.p, core.NewModule{Tenant: c.tenant, Name: b.Name, Version: b.Version,
			Type: strings.ToLower(b.Type), Vendor: b.Vendor, Description: b.Description})
		if err != nil {
			s.error(w, r, err)
			return
		}
		out = append(out, s.moduleJSON(r, m, false))
	}
	writeJSON(w, http.StatusCreated, out)
}

var moduleFilter = knownIn("id", "name", "version", "type", "vendor", "description", "createdat")

func (s *Server) listModules(w http.ResponseWriter, r *http.Request, c call) {
	mods, err := s.core.ListModules(r.Context(), c.p, c.tenant, flotilla.ModuleFilter{})
	if err != nil {
		s.error(w, r, err)
		return
	}
	pg, err := listOf(r, mods, func(m flotilla.Module) Fields {
		return func(f string) ([]string, bool) {
			switch f {
			case "id":
				return []string{strconv.FormatInt(m.ID, 10)}, true
			case "name":
				return []string{m.Name}, true
			case "version":
				return []string{m.Version}, true
			case "type":
				return []string{m.Type}, true
			case "vendor":
				return []string{m.Vendor}, true
			case "description":
				return []string{m.Description}, true
			case "createdat":
				return []string{strconv.FormatInt(m.CreatedAt.UnixMilli(), 10)}, true
			}
			return nil, false
		}
	}, moduleFilter, "id, name, version, type, vendor, description, createdAt", []sortKey{{field: "id"}})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := []moduleJSON{}
	for _, m := range pg.Content.([]flotilla.Module) {
		out = append(out, s.moduleJSON(r, m, s.locked(r, c, m.ID)))
	}
	pg.Content = out
	writeJSON(w, http.StatusOK, pg)
}

// locked: a module in a release can no longer change (hawkBit locks it).
func (s *Server) locked(r *http.Request, c call, id int64) bool {
	ids, err := s.core.Store.ModuleReleases(r.Context(), c.tenant, id)
	return err == nil && len(ids) > 0
}

func (s *Server) module(r *http.Request, c call) (flotilla.Module, error) {
	id, err := pathInt(r, "id", "SoftwareModule")
	if err != nil {
		return flotilla.Module{}, err
	}
	m, err := s.core.GetModule(r.Context(), c.p, c.tenant, id)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		return m, flotilla.Errorf(flotilla.ENotFound, "SoftwareModule with given identifier {%d} does not exist.", id)
	}
	return m, err
}

func (s *Server) getModule(w http.ResponseWriter, r *http.Request, c call) {
	m, err := s.module(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.moduleJSON(r, m, s.locked(r, c, m.ID)))
}

func (s *Server) deleteModule(w http.ResponseWriter, r *http.Request, c call) {
	m, err := s.module(r, c)
	if err == nil {
		err = s.core.DeleteModule(r.Context(), c.p, c.tenant, m.ID)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

type artifactJSON struct {
	audit
	ID               int64             `json:"id"`
	ProvidedFilename string            `json:"providedFilename"`
	Size             int64             `json:"size"`
	Hashes           map[string]string `json:"hashes"`
	Links            links             `json:"_links"`
}

func (s *Server) artifactJSON(r *http.Request, m flotilla.Module, f flotilla.File) artifactJSON {
	self := s.base(r) + "/softwaremodules/" + strconv.FormatInt(m.ID, 10) + "/artifacts/" + strconv.FormatInt(f.ID, 10)
	return artifactJSON{audit: auditOf(f.CreatedAt, f.CreatedAt), ID: f.ID, ProvidedFilename: f.Filename, Size: f.Size,
		Hashes: map[string]string{"sha1": f.SHA1, "md5": f.MD5, "sha256": f.SHA256}, Links: links{"self": {self}, "download": {self + "/download"}}}
}

// uploadArtifact takes hawkBit's multipart upload: the file in "file",
// optional "filename", and "sha1sum", "md5sum", "sha256sum" to check.
// Form fields may come before or after the file; the file is streamed.
func (s *Server) uploadArtifact(w http.ResponseWriter, r *http.Request, c call) {
	m, err := s.module(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "send the artifact as multipart/form-data with the bytes in the field \"file\""))
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	nf := core.NewFile{Size: -1}
	query := r.URL.Query()
	nf.Filename, nf.SHA1, nf.MD5, nf.SHA256 = query.Get("filename"), query.Get("sha1sum"), query.Get("md5sum"), query.Get("sha256sum")
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "the form has no field \"file\""))
			return
		}
		if err != nil {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "reading the form: %v", err))
			return
		}
		name := part.FormName()
		if name != "file" {
			v, _ := io.ReadAll(io.LimitReader(part, 4096))
			switch name {
			case "filename":
				nf.Filename = string(v)
			case "sha1sum":
				nf.SHA1 = string(v)
			case "md5sum":
				nf.MD5 = string(v)
			case "sha256sum":
				nf.SHA256 = string(v)
			}
			continue
		}
		if nf.Filename == "" {
			nf.Filename = part.FileName()
		}
		f, err := s.core.UploadModuleFile(r.Context(), c.p, c.tenant, m.ID, nf, part)
		if err != nil {
			s.error(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, s.artifactJSON(r, m, f))
		return
	}
}

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request, c call) {
	m, err := s.module(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := []artifactJSON{}
	for _, f := range m.Files {
		out = append(out, s.artifactJSON(r, m, f))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) file(r *http.Request, c call) (flotilla.Module, flotilla.File, error) {
	m, err := s.module(r, c)
	if err != nil {
		return m, flotilla.File{}, err
	}
	aid, err := pathInt(r, "artifactId", "Artifact")
	if err != nil {
		return m, flotilla.File{}, err
	}
	for _, f := range m.Files {
		if f.ID == aid {
			return m, f, nil
		}
	}
	return m, flotilla.File{}, flotilla.Errorf(flotilla.ENotFound, "Artifact with given identifier {%d} does not exist.", aid)
}

func (s *Server) getArtifact(w http.ResponseWriter, r *http.Request, c call) {
	m, f, err := s.file(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.artifactJSON(r, m, f))
}

func (s *Server) deleteArtifact(w http.ResponseWriter, r *http.Request, c call) {
	m, f, err := s.file(r, c)
	if err == nil {
		err = s.core.DeleteModuleFile(r.Context(), c.p, c.tenant, m.ID, f.ID)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) downloadArtifact(w http.ResponseWriter, r *http.Request, c call) {
	m, f, err := s.file(r, c)
	if err != nil {
		s.error(w, r, err)
		return
	}
	obj, err := s.core.OpenFile(r.Context(), m, f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer obj.Close()
	wire.ServeBlob(w, r, obj, f.Filename, "application/octet-stream")
}
