package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

// spore authenticates like every management route, except that with
// SporeOpen a request without credentials acts for the default tenant.
func (s *Server) spore(h func(w http.ResponseWriter, r *http.Request, p core.Principal)) http.Handler {
	authed := s.authed(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.SporeOpen && bearer(r) == "" {
			h(w, r, core.Principal{Token: flotilla.Token{ID: "spore-open", Tenant: flotilla.DefaultTenant,
				Scopes: []flotilla.Scope{flotilla.ScopeArtifactsWrite, flotilla.ScopeDevicesRead, flotilla.ScopeRolloutsWrite}}})
			return
		}
		authed.ServeHTTP(w, r)
	})
}

type sporeNode struct {
	IP      string            `json:"ip"`
	Version string            `json:"version"`
	Labels  map[string]string `json:"labels"`
}

func hostOf(address string) string {
	if u, err := url.Parse(address); err == nil {
		return u.Hostname()
	}
	return ""
}

// pushDevices lists the tenant's devices that have a push address.
func (s *Server) pushDevices(ctx context.Context, p core.Principal, tenant string) ([]flotilla.Device, error) {
	var out []flotilla.Device
	cursor := ""
	for {
		page, err := s.core.ListDevices(ctx, p, core.DeviceListQuery{Tenant: tenant, Cursor: cursor, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, d := range page.Devices {
			if d.Address != "" {
				out = append(out, d)
			}
		}
		if cursor = page.NextCursor; cursor == "" {
			return out, nil
		}
	}
}

func (s *Server) handleSporeNodeVersions(w http.ResponseWriter, r *http.Request, p core.Principal) {
	devs, err := s.pushDevices(r.Context(), p, r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	members := []sporeNode{}
	for _, d := range devs {
		v := d.Version
		if v == "" {
			v = d.Labels["version"]
		}
		members = append(members, sporeNode{IP: hostOf(d.Address), Version: v, Labels: d.Labels})
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": members})
}

// handleSporeRollout starts a push rollout to the named nodes, as the SPORE
// gateway's POST /api/rollout does.
func (s *Server) handleSporeRollout(w http.ResponseWriter, r *http.Request, p core.Principal) {
	tenant, err := p.TenantFor(r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := p.Require(flotilla.ScopeRolloutsWrite); err != nil {
		s.error(w, r, err)
		return
	}
	var req struct {
		Firmware struct {
			Name    string            `json:"name"`
			Version string            `json:"version"`
			Labels  map[string]string `json:"labels"`
		} `json:"firmware"`
		Nodes []sporeNode `json:"nodes"`
	}
	if err := wire.DecodeLenient(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if req.Firmware.Name == "" || req.Firmware.Version == "" {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "firmware.name and firmware.version are required"))
		return
	}
	if len(req.Nodes) == 0 {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "nodes must list at least one node"))
		return
	}
	a, err := s.core.GetArtifact(r.Context(), p, tenant, req.Firmware.Name, req.Firmware.Version)
	if flotilla.IsCode(err, flotilla.ENotFound) {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "firmware %s %s not found in the registry", req.Firmware.Name, req.Firmware.Version))
		return
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	devs, err := s.pushDevices(r.Context(), p, tenant)
	if err != nil {
		s.error(w, r, err)
		return
	}
	byIP := map[string]string{}
	for _, d := range devs {
		byIP[hostOf(d.Address)] = d.ID
	}
	var ids []string
	for _, n := range req.Nodes {
		id, ok := byIP[n.IP]
		if !ok {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "node %s is not a registered device with a push address", n.IP))
			return
		}
		ids = append(ids, id)
	}
	zero := 0.0
	ro, _, err := s.core.CreateRollout(r.Context(), p, core.RolloutRequest{Tenant: tenant,
		Name: "rollout_" + s.core.Now().UTC().Format("20060102150405"), ArtifactName: a.Name, ArtifactVersion: a.Version,
		DeviceIDs: ids, Waves: 1, Delivery: flotilla.DeliveryPush, Start: true,
		Policy: &flotilla.Policy{SuccessThreshold: &zero, MinSuccessRatio: &zero},
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "message": "Rollout started for " + itoa(len(ids)) + " nodes", "rolloutId": ro.ID, "totalNodes": len(ids),
		"firmwareUrl": s.baseURL(r) + "/api/registry/firmware/" + url.PathEscape(a.Name) + "/" + url.PathEscape(a.Version),
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func (s *Server) handleSporeHealth(w http.ResponseWriter, r *http.Request, p core.Principal) {
	if _, err := p.TenantFor(r.URL.Query().Get("tenant")); err != nil {
		s.error(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.core.Blobs.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "error": "registry storage unavailable"})
		return
	}
	if err := s.core.Store.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "error": "registry database unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "healthy", "service": "flotilla-registry"})
}

type sporeFirmware struct {
	Name    string            `json:"name"`
	Version string            `json:"version"`
	Labels  map[string]string `json:"labels"`
	Size    int64             `json:"size"`
	SHA256  string            `json:"sha256"`
}

func (s *Server) handleSporeListFirmware(w http.ResponseWriter, r *http.Request, p core.Principal) {
	list, err := s.core.ListArtifacts(r.Context(), p, core.ArtifactQuery{Tenant: r.URL.Query().Get("tenant")})
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := []sporeFirmware{}
	for _, a := range list {
		out = append(out, sporeFirmware{a.Name, a.Version, a.Labels, a.Size, a.SHA256})
	}
	writeJSON(w, http.StatusOK, out)
}

// handleSporeUploadFirmware takes the registry's multipart form: a
// "metadata" JSON field {name, version, labels} and a "firmware" file.
func (s *Server) handleSporeUploadFirmware(w http.ResponseWriter, r *http.Request, p core.Principal) {
	tenant, err := p.TenantFor(r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := p.Require(flotilla.ScopeArtifactsWrite); err != nil {
		s.error(w, r, err)
		return
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "send multipart/form-data with a metadata field and a firmware file"))
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var meta struct {
		Name    string            `json:"name"`
		Version string            `json:"version"`
		Labels  map[string]string `json:"labels"`
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, `multipart body has no "firmware" file`))
			return
		}
		if err != nil {
			s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "reading multipart body: %v", err))
			return
		}
		switch part.FormName() {
		case "metadata":
			b, _ := io.ReadAll(io.LimitReader(part, 64<<10))
			if err := json.Unmarshal(b, &meta); err != nil {
				s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "metadata is not JSON: %v", err))
				return
			}
		case "firmware":
			a, _, err := s.core.UploadArtifact(r.Context(), p, core.NewArtifact{Tenant: tenant, Name: meta.Name, Version: meta.Version, Labels: meta.Labels,
				Filename: part.FileName(), Size: -1}, part)
			if err != nil {
				s.error(w, r, err)
				return
			}
			writeJSON(w, http.StatusCreated, map[string]any{"success": true, "name": a.Name, "version": a.Version, "size": a.Size, "sha256": a.SHA256})
			return
		}
	}
}

func (s *Server) handleSporeUpdateFirmware(w http.ResponseWriter, r *http.Request, p core.Principal) {
	var req struct {
		Labels      *map[string]string `json:"labels"`
		Description *string            `json:"description"`
	}
	if err := wire.DecodeLenient(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	a, err := s.core.UpdateArtifact(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("name"), r.PathValue("version"), flotilla.ArtifactPatch{Labels: req.Labels, Description: req.Description})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sporeFirmware{a.Name, a.Version, a.Labels, a.Size, a.SHA256})
}
