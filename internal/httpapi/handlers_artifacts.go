package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func (s *Server) toArtifactJSON(r *http.Request, a flotilla.Artifact) api.Artifact {
	out := api.Artifact{ID: a.ID, Tenant: a.Tenant, Name: a.Name, Version: a.Version, Filename: a.Filename, Type: a.Type,
		Labels: a.Labels, Description: a.Description, Size: a.Size, SHA256: a.SHA256, SHA1: a.SHA1, MD5: a.MD5,
		CreatedAt: a.CreatedAt}
	if !a.MultiModule() {
		out.ContentURL = s.baseURL(r) + "/api/v1/artifacts/" + a.Name + "/" + a.Version + "/content"
	}
	for _, m := range a.Modules {
		out.Modules = append(out.Modules, toModuleJSON(m))
	}
	return out
}

func toModuleJSON(m flotilla.Module) api.Module {
	out := api.Module{ID: m.ID, Name: m.Name, Version: m.Version, Type: m.Type, Vendor: m.Vendor, Description: m.Description,
		Files: []api.File{}, CreatedAt: m.CreatedAt}
	for _, f := range m.Files {
		out.Files = append(out.Files, api.File{ID: f.ID, Filename: f.Filename, Size: f.Size, SHA256: f.SHA256, SHA1: f.SHA1, MD5: f.MD5})
	}
	return out
}

// parseLabelList reads "k=v,k2=v2" or a JSON object.
func parseLabelList(v string) (map[string]string, error) {
	out := map[string]string{}
	v = strings.TrimSpace(v)
	if v == "" {
		return out, nil
	}
	if strings.HasPrefix(v, "{") {
		if err := json.Unmarshal([]byte(v), &out); err != nil {
			return nil, flotilla.Errorf(flotilla.EInvalid, "labels must be a JSON object of strings or k=v,k2=v2: %v", err)
		}
		return out, nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, flotilla.Errorf(flotilla.EInvalid, "labels: %q is not key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return out, nil
}

// handleUploadArtifact accepts the artifact either as the raw body or as the
// "file" part of a multipart form, streaming it without buffering.
func (s *Server) handleUploadArtifact(w http.ResponseWriter, r *http.Request, p core.Principal) {
	q := r.URL.Query()
	req := core.NewArtifact{
		Tenant: q.Get("tenant"), Name: r.PathValue("name"), Version: r.PathValue("version"),
		Filename: q.Get("filename"), Type: q.Get("type"), Description: q.Get("description"),
		SHA256: q.Get("sha256"), Size: r.ContentLength,
	}
	if h := r.Header.Get("X-Checksum-Sha256"); h != "" {
		if req.SHA256 != "" && !strings.EqualFold(req.SHA256, h) {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "the sha256 query parameter and X-Checksum-Sha256 header disagree"))
			return
		}
		req.SHA256 = h
	}
	var err error
	if req.Labels, err = parseLabelList(q.Get("labels")); err != nil {
		s.error(w, r, err)
		return
	}
	body := io.Reader(r.Body)
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		req.Size = -1
		part, err := s.multipartFile(r, params["boundary"], &req)
		if err != nil {
			s.error(w, r, err)
			return
		}
		body = part
	}
	// Fail on bad metadata or a declared oversize before reading the body.
	if err := s.core.ValidateArtifactRequest(p, &req); err != nil {
		s.error(w, r, err)
		return
	}
	a, created, err := s.core.UploadArtifact(r.Context(), p, req, body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", s.baseURL(r)+"/api/v1/artifacts/"+a.Name+"/"+a.Version)
	}
	writeJSON(w, status, s.toArtifactJSON(r, a))
}

// multipartFile reads form fields up to the "file" part and returns that
// part as a stream. Fields override the query parameters.
func (s *Server) multipartFile(r *http.Request, boundary string, req *core.NewArtifact) (io.Reader, error) {
	if boundary == "" {
		return nil, flotilla.Errorf(flotilla.EInvalid, "multipart body without a boundary")
	}
	mr := multipart.NewReader(r.Body, boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, flotilla.Errorf(flotilla.EInvalid, `multipart body has no "file" part`)
		}
		if err != nil {
			return nil, flotilla.Errorf(flotilla.EInvalid, "reading multipart body: %v", err)
		}
		name := part.FormName()
		if name == "file" {
			if req.Filename == "" && part.FileName() != "" {
				req.Filename = part.FileName()
			}
			return part, nil
		}
		b, err := io.ReadAll(io.LimitReader(part, 64<<10))
		if err != nil {
			return nil, flotilla.Errorf(flotilla.EInvalid, "reading multipart field %q: %v", name, err)
		}
		v := string(b)
		switch name {
		case "filename":
			req.Filename = v
		case "type":
			req.Type = v
		case "description":
			req.Description = v
		case "sha256":
			req.SHA256 = v
		case "labels":
			if req.Labels, err = parseLabelList(v); err != nil {
				return nil, err
			}
		default:
			return nil, flotilla.Errorf(flotilla.EInvalid, "unknown multipart field %q; known: file, filename, type, description, sha256, labels", name)
		}
	}
}

func (s *Server) handleGetArtifact(w http.ResponseWriter, r *http.Request, p core.Principal) {
	a, err := s.core.GetArtifact(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.toArtifactJSON(r, a))
}

func (s *Server) handleListArtifacts(w http.ResponseWriter, r *http.Request, p core.Principal) {
	limit, cursor, err := page(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	offset := 0
	if cursor != "" {
		if offset, err = strconv.Atoi(cursor); err != nil || offset < 0 {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "cursor %q is invalid; pass the next_cursor of the previous page", cursor))
			return
		}
	}
	q := r.URL.Query()
	list, err := s.core.ListArtifacts(r.Context(), p, core.ArtifactQuery{Tenant: q.Get("tenant"), Name: q.Get("name"), Selector: q.Get("selector")})
	if err != nil {
		s.error(w, r, err)
		return
	}
	total := len(list)
	out := api.List[api.Artifact]{Items: []api.Artifact{}, Total: &total}
	for i := offset; i < len(list) && i < offset+limit; i++ {
		out.Items = append(out.Items, s.toArtifactJSON(r, list[i]))
	}
	if offset+limit < len(list) {
		out.NextCursor = strconv.Itoa(offset + limit)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePatchArtifact(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Labels      *map[string]string `json:"labels"`
		Description *string            `json:"description"`
	}
	if err := wire.Decode(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	a, err := s.core.UpdateArtifact(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"), r.PathValue("version"),
		flotilla.ArtifactPatch{Labels: req.Labels, Description: req.Description})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.toArtifactJSON(r, a))
}

func (s *Server) handleDeleteArtifact(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if err := s.core.DeleteArtifact(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"), r.PathValue("version")); err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleArtifactContent(w http.ResponseWriter, r *http.Request, p core.Principal) {
	a, err := s.core.GetArtifact(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	obj, err := s.core.OpenArtifact(r.Context(), a)
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer obj.Close()
	wire.ServeBlob(w, r, obj, a.Filename, "")
}
