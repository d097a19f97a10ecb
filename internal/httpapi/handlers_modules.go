package httpapi

import (
	"net/http"
	"strconv"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func moduleID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, flotilla.Errorf(flotilla.ENotFound, "software module %q not found", r.PathValue("id"))
	}
	return id, nil
}

func (s *Server) handleCreateModule(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req api.NewModule
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	m, err := s.core.CreateModule(r.Context(), p, core.NewModule{Tenant: r.URL.Query().Get("tenant"), Name: req.Name, Version: req.Version,
		Type: req.Type, Vendor: req.Vendor, Description: req.Description})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toModuleJSON(m))
}

func (s *Server) handleListModules(w http.ResponseWriter, r *http.Request, p core.Principal) {
	q := r.URL.Query()
	list, err := s.core.ListModules(r.Context(), p, q.Get("tenant"), flotilla.ModuleFilter{Name: q.Get("name"), Version: q.Get("version"), Type: q.Get("type")})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := []api.Module{}
	for _, m := range list {
		out = append(out, toModuleJSON(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (s *Server) handleGetModule(w http.ResponseWriter, r *http.Request, p core.Principal) {
	id, err := moduleID(r)
	if err == nil {
		var m flotilla.Module
		if m, err = s.core.GetModule(r.Context(), p, r.URL.Query().Get("tenant"), id); err == nil {
			writeJSON(w, http.StatusOK, toModuleJSON(m))
			return
		}
	}
	s.error(w, r, err)
}

func (s *Server) handleDeleteModule(w http.ResponseWriter, r *http.Request, p core.Principal) {
	id, err := moduleID(r)
	if err == nil {
		err = s.core.DeleteModule(r.Context(), p, r.URL.Query().Get("tenant"), id)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleUploadModuleFile streams the body into a module as one file;
// ?sha256=, ?sha1=, ?md5= are checked.
func (s *Server) handleUploadModuleFile(w http.ResponseWriter, r *http.Request, p core.Principal) {
	id, err := moduleID(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	f, err := s.core.UploadModuleFile(r.Context(), p, q.Get("tenant"), id, core.NewFile{Filename: r.PathValue("filename"),
		SHA256: q.Get("sha256"), SHA1: q.Get("sha1"), MD5: q.Get("md5"), Size: r.ContentLength}, r.Body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.File{ID: f.ID, Filename: f.Filename, Size: f.Size, SHA256: f.SHA256, SHA1: f.SHA1, MD5: f.MD5})
}

func (s *Server) handleDeleteModuleFile(w http.ResponseWriter, r *http.Request, p core.Principal) {
	id, err := moduleID(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	tenant := r.URL.Query().Get("tenant")
	m, err := s.core.GetModule(r.Context(), p, tenant, id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	for _, f := range m.Files {
		if f.Filename == r.PathValue("filename") {
			if err := s.core.DeleteModuleFile(r.Context(), p, tenant, id, f.ID); err != nil {
				s.error(w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "software module %d has no file %q", id, r.PathValue("filename")))
}

func (s *Server) handleCreateRelease(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req api.NewRelease
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	a, err := s.core.CreateRelease(r.Context(), p, core.NewRelease{Tenant: r.URL.Query().Get("tenant"), Name: req.Name, Version: req.Version,
		Type: req.Type, Description: req.Description, Labels: req.Labels, Modules: req.Modules})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.toArtifactJSON(r, a))
}
