package deviceapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/wire"
)

// authorizeRepository admits the tenant's devices, push nodes and
// operators to its TUF repository, counting failures like DDI does.
func (s *Server) authorizeRepository(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Repository == nil {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "this server has no TUF repositories"))
		return false
	}
	now := time.Now()
	lim := s.limits.Load()
	ip := wire.ClientIP(r)
	if blocked, wait := lim.authFailures.Blocked(ip, now); blocked {
		s.error(w, r, wire.RateLimited("too many failed authentications from %s", ip, wait))
		return false
	}
	var cert = certIdentity(r)
	if err := s.core.AuthorizeRepository(r.Context(), r.PathValue("tenant"), r.Header.Get("Authorization"), cert); err != nil {
		if flotilla.IsCode(err, flotilla.EUnauthorized) {
			lim.authFailures.Allow(ip, now)
		}
		s.error(w, r, err)
		return false
	}
	return true
}

// handleTUFFile serves a metadata file of the tenant's repository.
func (s *Server) handleTUFFile(w http.ResponseWriter, r *http.Request) {
	if !s.authorizeRepository(w, r) {
		return
	}
	b, err := s.opts.Repository.File(r.Context(), r.PathValue("tenant"), r.PathValue("file"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

// handleTUFTarget serves a signed target's bytes, for TUF clients that
// download through the repository.
func (s *Server) handleTUFTarget(w http.ResponseWriter, r *http.Request) {
	if !s.authorizeRepository(w, r) {
		return
	}
	a, err := s.opts.Repository.TargetFile(r.Context(), r.PathValue("tenant"), r.PathValue("path"))
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
	wire.ServeBlob(w, r, obj, a.Filename, "application/octet-stream")
}
