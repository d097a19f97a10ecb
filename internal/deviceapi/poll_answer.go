package deviceapi

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/ddi"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/maintenance"
)

// renderPoll renders what a device's poll is answered with, and until
// when that answer holds.
func (s *Server) renderPoll(v core.DeviceView, base string, now time.Time) *pollEntry {
	e := &pollEntry{base: base}
	sleep := s.core.PollInterval(v.Settings)
	backoff := s.opts.Backoff
	backoff.Polling = sleep
	if v.Settings.MinPollingTime > 0 {
		backoff.MinPolling = time.Duration(v.Settings.MinPollingTime)
	}
	if v.Settings.MaintenanceWindowPollCount > 0 {
		backoff.PollCount = v.Settings.MaintenanceWindowPollCount
	}
	if backoff.MinPolling > backoff.Polling {
		backoff.MinPolling = backoff.Polling
	}
	var p ddi.Poll
	if a := v.Action; a != nil {
		id := strconv.FormatInt(a.ID, 10)
		if v.ActionAlone {
			e.ends = a.ID
		}
		if a.State == flotilla.StateCancelRequested {
			p.Links.CancelAction = &ddi.Link{Href: base + "/cancelAction/" + id}
		} else {
			var window string
			p.Links.DeploymentBase, e.until, window = actionLink(base, *a, now)
			if window == ddi.WindowUnavailable {
				e.ends = 0 // its sleep is the window's, not an idle device's
				if w, err := maintenance.Parse(*a.Window); err == nil {
					if start, ok := w.NextStart(now); ok {
						sleep = backoff.PollingSleep(start.Sub(now))
						// The back-off changes with every second that passes.
						e.until = now.Add(time.Second)
					}
				}
			}
		}
	}
	if v.Installed != nil {
		p.Links.InstalledBase = &ddi.Link{Href: installedBaseHref(base, v.Installed.ID)}
	}
	if v.AttributesRequested {
		p.Links.ConfigData = &ddi.Link{Href: base + "/configData"}
	}
	p.Config.Polling.Sleep = ddi.FormatSleep(sleep)
	e.body, _ = json.Marshal(p)
	e.etag = etagOf(e.body)
	if age := s.opts.MaxCacheAge; age > 0 && (e.until.IsZero() || now.Add(age).Before(e.until)) {
		e.until = now.Add(age)
	}
	return e
}

// actionLink is the deploymentBase link of a, what its maintenance window
// says now, and until when both hold (zero: until a changes).
func actionLink(base string, a flotilla.Deployment, now time.Time) (link *ddi.Link, until time.Time, window string) {
	download, update, window, until := handling(a, now)
	return &ddi.Link{Href: base + "/deploymentBase/" + strconv.FormatInt(a.ID, 10) + "?c=" + actionHash(a, download, update, window)}, until, window
}

func etagOf(body []byte) string {
	sum := sha1.Sum(body)
	return `"` + hex.EncodeToString(sum[:10]) + `"`
}

// AttributesAnsweredLocal follows a device's attribute upload on this
// replica (core's AttributesAnswered hook; other replicas invalidate): a
// cached answer that asked for them loses its configData link, and the
// device is not read again to say the same thing without it.
func (s *Server) AttributesAnsweredLocal(tenant, device string) {
	s.cache.rewrite(cacheKey(tenant, device), withoutConfigData)
}

// withoutConfigData is e without its configData link: e itself if it has
// none, nil if it cannot be read back.
func withoutConfigData(e *pollEntry) *pollEntry {
	if !asksForAttributes(e.body) {
		return e
	}
	return edited(e, func(p *ddi.Poll) bool {
		p.Links.ConfigData = nil
		return true
	})
}

// edited is e with edit applied to its answer (nil if edit refuses it, or
// e cannot be read back), with its own ETag; it was read when e was.
func edited(e *pollEntry, edit func(*ddi.Poll) bool) *pollEntry {
	var p ddi.Poll
	if json.Unmarshal(e.body, &p) != nil || !edit(&p) {
		return nil
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil
	}
	return &pollEntry{body: body, etag: etagOf(body), base: e.base, until: e.until, read: e.read}
}

func installedBaseHref(base string, id int64) string {
	return base + "/installedBase/" + strconv.FormatInt(id, 10)
}

// ActionEndedLocal follows the end of a device's deployment on this
// replica (core's ActionEnded hook; other replicas invalidate): a cached
// answer that named it, with nothing else waiting, is rewritten without
// reading the device again.
func (s *Server) ActionEndedLocal(d flotilla.Deployment) {
	s.cache.rewrite(cacheKey(d.Tenant, d.DeviceID), func(e *pollEntry) *pollEntry {
		return afterEnd(e, d.ID, d.State == flotilla.StateSucceeded)
	})
}

// afterEnd is e as renderPoll would render it once deployment id, its
// action and the device's only open work, ended: without the action's
// link, and after a success with the newer installed base and a request
// for the attributes (as the store writes it). Nil if e was not rendered
// for that end or cannot be read back.
func afterEnd(e *pollEntry, id int64, succeeded bool) *pollEntry {
	if e.ends != id || id == 0 {
		return nil
	}
	return edited(e, func(p *ddi.Poll) bool {
		p.Links.DeploymentBase, p.Links.CancelAction = nil, nil
		if !succeeded {
			return true
		}
		if l := p.Links.InstalledBase; l != nil {
			installed, err := strconv.ParseInt(l.Href[strings.LastIndexByte(l.Href, '/')+1:], 10, 64)
			if err != nil {
				return false
			}
			if installed > id {
				id = installed
			}
		}
		p.Links.InstalledBase = &ddi.Link{Href: installedBaseHref(e.base, id)}
		p.Links.ConfigData = &ddi.Link{Href: e.base + "/configData"}
		return true
	})
}

// ActionStartedLocal follows a wave's release of d, a device's pull
// deployment, on this replica (core's ActionStarted hook; other replicas
// invalidate): a cached answer without an action, read before the release
// began (on the process's clock), names d as its action without reading
// the device again.
func (s *Server) ActionStartedLocal(d flotilla.Deployment, began time.Time) {
	now := s.core.Now()
	s.cache.rewrite(cacheKey(d.Tenant, d.DeviceID), func(e *pollEntry) *pollEntry {
		return afterStart(e, d, sinceStart(began), now)
	})
}

// afterStart is e as renderPoll would render it at now once d was
// released: with d's deploymentBase link, d being the device's only
// action, whose end can be rewritten too. Nil if e has an action or was
// read at or after began — a change after the release (d canceled, say)
// may be what it shows, and its own announcement may have come first — or
// d has a maintenance window (a closed window moves the sleep), or e
// cannot be read back.
//
// A scheduled deployment changes nothing a device is told, so an answer
// without an action read before the release is the device without d.
func afterStart(e *pollEntry, d flotilla.Deployment, began time.Duration, now time.Time) *pollEntry {
	if e.read >= began || d.Window != nil {
		return nil
	}
	link, until, _ := actionLink(e.base, d, now)
	ne := edited(e, func(p *ddi.Poll) bool {
		if p.Links.DeploymentBase != nil || p.Links.CancelAction != nil {
			return false
		}
		p.Links.DeploymentBase = link
		return true
	})
	if ne == nil {
		return nil
	}
	if !until.IsZero() && (ne.until.IsZero() || until.Before(ne.until)) {
		ne.until = until
	}
	ne.ends = d.ID
	return ne
}
