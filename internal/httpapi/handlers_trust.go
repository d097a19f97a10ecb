package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

func (s *Server) handleTrustStatus(w http.ResponseWriter, r *http.Request, p core.Principal) {
	tenant, err := p.TenantFor(r.URL.Query().Get("tenant"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	st, err := s.core.TrustStatus(r.Context(), p, tenant)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := api.TrustStatus{Signed: st.Signed, OnlineKeys: map[string]json.RawMessage{}, Versions: st.Versions, Expires: st.Expires,
		Releases: st.Releases, MetadataURL: s.baseURL(r) + "/" + tenant + "/tuf/"}
	for role, k := range st.OnlineKeys {
		out.OnlineKeys[role], _ = json.Marshal(k)
	}
	writeJSON(w, http.StatusOK, out)
}

// maxMetadataBody bounds an upload of signed metadata: a targets file
// lists every signed release.
const maxMetadataBody = 16 << 20

func (s *Server) handlePublishTrust(w http.ResponseWriter, r *http.Request, p core.Principal) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMetadataBody+1))
	if err != nil {
		s.error(w, r, flotilla.Errorf(flotilla.EInvalid, "reading request body: %v", err))
		return
	}
	if len(body) > maxMetadataBody {
		s.error(w, r, flotilla.Errorf(flotilla.ETooLarge, "metadata body exceeds %d bytes", maxMetadataBody))
		return
	}
	var req api.TrustMetadata
	if err := wire.DecodeBytes(body, &req, true); err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.core.PublishTrust(r.Context(), p, r.URL.Query().Get("tenant"), nullable(req.Root), nullable(req.Targets)); err != nil {
		s.error(w, r, err)
		return
	}
	s.handleTrustStatus(w, r, p)
}

func nullable(m json.RawMessage) []byte {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}

func (s *Server) handleTrustFile(w http.ResponseWriter, r *http.Request, p core.Principal) {
	b, err := s.core.TrustFile(r.Context(), p, r.URL.Query().Get("tenant"), r.PathValue("file"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}
