package deviceapi

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/ddi"
	"github.com/flotilla-ota/flotilla/internal/wire"
	"github.com/flotilla-ota/flotilla/maintenance"
)

func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	base := s.deviceBase(r)
	now := s.core.Now()
	// The cached answer and its version are read before authentication,
	// which may read the device's answer along with its token: an answer
	// read after the version cannot be stored over a newer invalidation.
	tenant, device := strings.ToLower(r.PathValue("tenant")), r.PathValue("controllerId")
	key := cacheKey(tenant, device)
	e, version := s.cache.get(key, base, now)
	id, view, ok := s.authenticate(w, r, true, e == nil)
	if !ok {
		return
	}
	if id.Tenant != tenant || id.DeviceID != device {
		// Not the device the URL names (no authentication does that
		// today): nothing read for the URL's key is this device's.
		key, view = cacheKey(id.Tenant, id.DeviceID), nil
		e, version = s.cache.get(key, base, now)
	}
	if e == nil {
		if view == nil {
			v, err := s.core.DeviceView(r.Context(), id)
			if err != nil {
				s.error(w, r, err)
				return
			}
			view = &v
		}
		e = s.renderPoll(*view, base, now)
		s.cache.put(key, version, e)
	}
	h := w.Header()
	h["Etag"] = []string{e.etag}
	if match := r.Header.Get("If-None-Match"); match != "" && match == e.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = []string{"application/hal+json;charset=UTF-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(e.body))}
	w.Write(e.body)
}

// handling computes deployment.download and deployment.update, the window
// status, and until when that answer holds.
func handling(d flotilla.Deployment, now time.Time) (download, update, window string, until time.Time) {
	switch d.Type {
	case flotilla.TypeSoft:
		download, update = ddi.HandlingAttempt, ddi.HandlingAttempt
	case flotilla.TypeDownloadOnly:
		download, update = ddi.HandlingForced, ddi.HandlingSkip
	case flotilla.TypeTimeForced:
		download, update = ddi.HandlingAttempt, ddi.HandlingAttempt
		if d.ForceAt != nil {
			if !now.Before(*d.ForceAt) {
				download, update = ddi.HandlingForced, ddi.HandlingForced
			} else {
				until = *d.ForceAt
			}
		}
	default:
		download, update = ddi.HandlingForced, ddi.HandlingForced
	}
	if d.Window != nil {
		if w, err := maintenance.Parse(*d.Window); err == nil {
			if w.Available(now) {
				window = ddi.WindowAvailable
			} else {
				window = ddi.WindowUnavailable
				update = ddi.HandlingSkip
			}
			if next, ok := w.NextChange(now); ok && (until.IsZero() || next.Before(until)) {
				until = next
			}
		}
	}
	return download, update, window, until
}

// actionHash changes whenever what the device is told about an action
// changes, so that clients refetch the deploymentBase.
func actionHash(d flotilla.Deployment, download, update, window string) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d|%s|%s|%s", d.ID, download, update, window)
	return strconv.FormatUint(uint64(h.Sum32()), 10)
}

// fileJSON describes one file of module m of release a to a device. A
// single-file release of a signed tenant is described with its signed
// length and sha256.
func (s *Server) fileJSON(ctx context.Context, base string, a flotilla.Artifact, m flotilla.Module, f flotilla.File) ddi.Artifact {
	url := base + "/softwaremodules/" + strconv.FormatInt(m.ID, 10) + "/artifacts/" + f.Filename
	direct := url
	if s.opts.Presign != nil {
		if u, err := s.opts.Presign(ctx, flotilla.Artifact{Tenant: m.Tenant, Name: m.Name, Version: m.Version, Filename: f.Filename, SHA256: f.SHA256}); err == nil {
			direct = u
		} else {
			s.log.Warn("presign download", "module", m.Name, "file", f.Filename, "err", err)
		}
	}
	size, sha := f.Size, f.SHA256
	if !a.MultiModule() && a.ID != 0 {
		signed := s.core.DeviceRelease(ctx, a.Tenant, a)
		size, sha = signed.Size, signed.SHA256
	}
	return ddi.Artifact{
		Filename: f.Filename,
		Hashes:   ddi.Hashes{SHA1: f.SHA1, MD5: f.MD5, SHA256: sha},
		Size:     size,
		Links: ddi.ArtifactLinks{
			Download: &ddi.Link{Href: url}, DownloadHTTP: &ddi.Link{Href: direct},
			MD5Sum: &ddi.Link{Href: url + ".MD5SUM"}, MD5SumHTTP: &ddi.Link{Href: url + ".MD5SUM"},
		},
	}
}

// deploymentBody renders an action: one chunk per module of its release,
// in install order. Each chunk's metadata carries the artifact type (so
// SDKs pick a fetcher) and the release's name and version.
func (s *Server) deploymentBody(r *http.Request, d flotilla.Deployment, a flotilla.Artifact, now time.Time) ddi.DeploymentBase {
	download, update, window, _ := handling(d, now)
	chunks := make([]ddi.Chunk, 0, len(a.Modules))
	for _, m := range a.Modules {
		ch := ddi.Chunk{Part: m.Type, Name: m.Name, Version: m.Version, Artifacts: []ddi.Artifact{},
			Metadata: []ddi.KeyValue{{Key: "type", Value: a.Type}, {Key: "release.name", Value: a.Name}, {Key: "release.version", Value: a.Version}}}
		if a.MultiModule() {
			ch.Metadata[0].Value = flotilla.ArtifactBinary
		}
		for _, f := range m.Files {
			ch.Artifacts = append(ch.Artifacts, s.fileJSON(r.Context(), s.deviceBase(r), a, m, f))
		}
		chunks = append(chunks, ch)
	}
	body := ddi.DeploymentBase{
		ID: strconv.FormatInt(d.ID, 10),
		Deployment: ddi.Deployment{
			Download: download, Update: update, MaintenanceWindow: window, Chunks: chunks,
		},
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("actionHistory")); err == nil && n != 0 {
		body.ActionHistory = actionHistory(d, n)
	}
	return body
}

// actionHistory renders the newest n history entries (all for n < 0), as
// hawkBit's ?actionHistory=N does.
func actionHistory(d flotilla.Deployment, n int) *ddi.ActionHistory {
	h := &ddi.ActionHistory{Status: strings.ToUpper(string(d.State)), Messages: []string{}}
	evs := d.History
	for i := len(evs) - 1; i >= 0 && (n < 0 || len(h.Messages) < n); i-- {
		ev := evs[i]
		msg := ev.At.UTC().Format(time.RFC3339) + " " + string(ev.State)
		if ev.Execution != "" {
			msg += " (" + ev.Execution
			if ev.Finished != "" {
				msg += "/" + ev.Finished
			}
			msg += ")"
		}
		if len(ev.Details) > 0 {
			msg += ": " + strings.Join(ev.Details, "; ")
		}
		h.Messages = append(h.Messages, msg)
	}
	return h
}

func (s *Server) handleDeploymentBase(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	aid, ok := actionID(w, r, s)
	if !ok {
		return
	}
	d, a, err := s.core.DeploymentBase(r.Context(), id, aid)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if d.History == nil && r.URL.Query().Get("actionHistory") != "" {
		d, _ = s.core.Store.GetDeployment(r.Context(), id.Tenant, aid)
	}
	writeHAL(w, s.deploymentBody(r, d, a, s.core.Now()))
}

func (s *Server) handleInstalledBase(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	aid, ok := actionID(w, r, s)
	if !ok {
		return
	}
	d, a, err := s.core.InstalledBase(r.Context(), id, aid)
	if err != nil {
		s.error(w, r, err)
		return
	}
	body := s.deploymentBody(r, d, a, s.core.Now())
	body.Deployment.Update, body.Deployment.MaintenanceWindow = ddi.HandlingForced, ""
	writeHAL(w, body)
}

func (s *Server) handleCancelAction(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	aid, ok := actionID(w, r, s)
	if !ok {
		return
	}
	d, err := s.core.CancelAction(r.Context(), id, aid)
	if err != nil {
		s.error(w, r, err)
		return
	}
	sid := strconv.FormatInt(d.ID, 10)
	writeHAL(w, ddi.CancelAction{ID: sid, CancelAction: ddi.CancelStop{StopID: sid}})
}

// ParseFeedback decodes a DDI feedback body leniently (old clients send
// "id" and "time") and validates it.
func ParseFeedback(body []byte) (flotilla.Feedback, error) {
	var fb ddi.Feedback
	if err := wire.DecodeBytes(body, &fb, false); err != nil {
		return flotilla.Feedback{}, err
	}
	if fb.Status == nil {
		return flotilla.Feedback{}, flotilla.Errorf(flotilla.EInvalid, "feedback needs a status object with an execution")
	}
	f := flotilla.Feedback{Execution: fb.Status.Execution, Details: fb.Status.Details, Code: fb.Status.Code}
	if res := fb.Status.Result; res != nil {
		f.Finished = res.Finished
		if res.Progress != nil {
			f.Cnt, f.Of = res.Progress.Cnt, res.Progress.Of
		}
	}
	return f, flotilla.ValidateFeedback(f)
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := readLimited(r, wire.MaxJSONBody)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (s *Server) handleDeploymentFeedback(w http.ResponseWriter, r *http.Request) {
	s.feedback(w, r, false)
}

func (s *Server) handleCancelFeedback(w http.ResponseWriter, r *http.Request) {
	s.feedback(w, r, true)
}

func (s *Server) feedback(w http.ResponseWriter, r *http.Request, cancel bool) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	aid, ok := actionID(w, r, s)
	if !ok {
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	f, err := ParseFeedback(body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if cancel {
		_, err = s.core.CancelFeedback(r.Context(), id, aid, f)
	} else {
		_, err = s.core.DeploymentFeedback(r.Context(), id, aid, f)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// ParseConfigData decodes a configData body. Values may be strings,
// numbers or booleans; other JSON is refused.
func ParseConfigData(body []byte) (mode string, data map[string]string, err error) {
	var raw struct {
		ID     any                        `json:"id"`
		Time   any                        `json:"time"`
		Status any                        `json:"status"`
		Mode   string                     `json:"mode"`
		Data   map[string]json.RawMessage `json:"data"`
	}
	if err := wire.DecodeBytes(body, &raw, false); err != nil {
		return "", nil, err
	}
	if raw.Data == nil {
		return "", nil, flotilla.Errorf(flotilla.EInvalid, `configData needs a "data" object of attributes`)
	}
	data = make(map[string]string, len(raw.Data))
	for k, v := range raw.Data {
		var sv string
		if err := json.Unmarshal(v, &sv); err == nil {
			data[k] = sv
			continue
		}
		var any any
		if err := json.Unmarshal(v, &any); err != nil {
			return "", nil, flotilla.Errorf(flotilla.EInvalid, "attribute %q: %v", k, err)
		}
		switch any.(type) {
		case float64, bool:
			data[k] = strings.TrimSpace(string(v))
		default:
			return "", nil, flotilla.Errorf(flotilla.EInvalid, "attribute %q must be a string, number or boolean", k)
		}
	}
	switch raw.Mode {
	case "", ddi.ModeMerge, ddi.ModeReplace, ddi.ModeRemove:
	default:
		return "", nil, flotilla.Errorf(flotilla.EInvalid, "mode %q is invalid: use merge, replace or remove", raw.Mode)
	}
	return raw.Mode, data, nil
}

func (s *Server) handleConfigData(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	mode, data, err := ParseConfigData(body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.core.ConfigData(r.Context(), id, mode, data); err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleListArtifacts(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	mid, err := strconv.ParseInt(r.PathValue("moduleId"), 10, 64)
	if err != nil {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "software module %q not found", r.PathValue("moduleId")))
		return
	}
	m, _, err := s.core.DeviceFile(r.Context(), id, mid, "")
	if err != nil {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "software module %d not found", mid))
		return
	}
	out := []ddi.Artifact{}
	for _, f := range m.Files {
		out = append(out, s.fileJSON(r.Context(), s.deviceBase(r), flotilla.Artifact{}, m, f))
	}
	writeHAL(w, out)
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" && certIdentity(r) == nil && s.anonymousDownload(w, r) {
		return
	}
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	mid, err := strconv.ParseInt(r.PathValue("moduleId"), 10, 64)
	if err != nil {
		s.error(w, r, flotilla.Errorf(flotilla.ENotFound, "software module %q not found", r.PathValue("moduleId")))
		return
	}
	name := r.PathValue("fileName")
	m, f, err := s.core.DeviceFile(r.Context(), id, mid, name)
	if flotilla.IsCode(err, flotilla.ENotFound) && strings.HasSuffix(name, ".MD5SUM") {
		if _, f, err = s.core.DeviceFile(r.Context(), id, mid, strings.TrimSuffix(name, ".MD5SUM")); err == nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "%s  %s\n", f.MD5, f.Filename)
			return
		}
	}
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
	if s.opts.OnDownload != nil {
		s.opts.OnDownload(r.Header.Get("Range") != "")
	}
	wire.ServeBlob(w, r, obj, f.Filename, "application/octet-stream")
}

func writeHAL(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/hal+json;charset=UTF-8")
	w.Write(b)
}

// anonymousDownload serves a file without credentials where the tenant
// allows it; false leaves the request to the authenticated path.
func (s *Server) anonymousDownload(w http.ResponseWriter, r *http.Request) bool {
	mid, err := strconv.ParseInt(r.PathValue("moduleId"), 10, 64)
	if err != nil {
		return false
	}
	m, f, err := s.core.AnonymousFile(r.Context(), r.PathValue("tenant"), mid, r.PathValue("fileName"))
	if flotilla.IsCode(err, flotilla.EUnauthorized) {
		return false
	}
	if err != nil {
		s.error(w, r, err)
		return true
	}
	obj, err := s.core.OpenFile(r.Context(), m, f)
	if err != nil {
		s.error(w, r, err)
		return true
	}
	defer obj.Close()
	wire.ServeBlob(w, r, obj, f.Filename, "application/octet-stream")
	return true
}
