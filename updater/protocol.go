package updater

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/flotilla-ota/flotilla/ddi"
	"github.com/flotilla-ota/flotilla/tuf"
)

// Update is an assignment the server offered: one DDI action.
type Update struct {
	// ActionID is the server's id of this deployment.
	ActionID string
	// Download and Update are "forced", "attempt" or "skip".
	Download, Update string
	// MaintenanceWindow is "available", "unavailable" or "" (none).
	MaintenanceWindow string
	// Name and Version are the release's (for a single module, the
	// module's); Part is the first module's type.
	Name, Version, Part string
	// Type is the artifact type: "binary", "swu", "oci-image", ...
	Type string
	// Artifacts are the files of the update, module after module.
	Artifacts []Artifact
	// Modules are the software modules of the update in install order
	// (DDI chunks), each naming its files in Artifacts. A release of one
	// file has one module. Handler.Apply is called once for the whole
	// update; a handler installs Modules in order (ModuleFiles gives each
	// one's downloaded files) and, on a failure, undoes the ones it did.
	Modules []Module
	// Signed describes each artifact as the tenant's signed metadata
	// does, when the client has a TrustedRoot; Size, SHA256 and SHA512 of
	// Artifacts are then the signed values.
	Signed []*tuf.Target

	client *Client
	job    *job
	// verified: the payload was checked against the signed hashes.
	verified bool
}

// Artifact is one file of an update.
type Artifact struct {
	Filename string
	Size     int64
	SHA256   string
	// SHA512 is set from signed metadata only.
	SHA512 string
	SHA1   string
	MD5    string
	URL    string
}

// Module is one software module of an update.
type Module struct {
	Name, Version string
	// Part is the module type: os, application, firmware, ...
	Part string
	// First and Count locate the module's files in Update.Artifacts (and
	// in Payload.Files after a default fetch).
	First, Count int
}

// ModuleFiles returns the downloaded files of module i of the update.
func (u *Update) ModuleFiles(p *Payload, i int) []string {
	m := u.Modules[i]
	if m.First+m.Count > len(p.Files) {
		return nil
	}
	return p.Files[m.First : m.First+m.Count]
}

// InstallAllowed reports whether the server lets the device install now
// (false outside a maintenance window or for download-only updates).
func (u *Update) InstallAllowed() bool { return u.Update != ddi.HandlingSkip }

func (c *Client) base() string {
	return c.cfg.Server + "/" + c.cfg.Tenant + "/controller/v1/" + c.cfg.ControllerID
}

// authKind names the credentials the client sends.
func (c *Client) authKind() string {
	switch {
	case c.cfg.Token != "":
		return "a TargetToken"
	case c.cfg.GatewayToken != "":
		return "a GatewayToken"
	}
	return "no token"
}

// statusError is a non-2xx answer.
type statusError struct {
	Status int
	Body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.Status, strings.TrimSpace(e.Body))
}

func (c *Client) do(ctx context.Context, method, url string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	c.authorize(req)
	req.Header.Set("Accept", "application/hal+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &statusError{Status: resp.StatusCode, Body: string(b)}
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// check runs one poll cycle. wait makes it block until a started update
// finishes or parks waiting for its window.
func (c *Client) check(ctx context.Context, wait bool) error {
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	c.flushReports(ctx)
	var poll ddi.Poll
	if err := c.do(ctx, http.MethodGet, c.base(), nil, &poll); err != nil {
		c.mu.Lock()
		c.lastSleep = 0
		c.failures++
		c.mu.Unlock()
		var se *statusError
		if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			return fmt.Errorf("poll: the server rejected the credentials this device sent (%s): check its token, gateway token or certificate: %w", c.authKind(), err)
		}
		return fmt.Errorf("poll: %w", err)
	}
	sleep, err := ddi.ParseSleep(poll.Config.Polling.Sleep)
	if err != nil {
		sleep = 0
	}
	c.mu.Lock()
	c.lastSleep, c.failures = sleep, 0
	if sleep > 0 {
		c.serverSleep = sleep
	}
	c.mu.Unlock()
	if poll.Links.ConfigData != nil {
		if err := c.sendConfigData(ctx, poll.Links.ConfigData.Href); err != nil {
			c.log.Warn("send attributes", "err", err)
		}
	}
	var j *job
	switch {
	case poll.Links.CancelAction != nil:
		return c.handleCancel(ctx, poll.Links.CancelAction.Href)
	case poll.Links.DeploymentBase != nil:
		if j, err = c.handleDeployment(ctx, poll.Links.DeploymentBase.Href); err != nil {
			return err
		}
	}
	if wait && j != nil {
		select {
		case <-j.done:
		case <-j.parkedChan():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// attributes is what the device reports about itself.
func (c *Client) attributes() map[string]string {
	attrs := map[string]string{}
	for k, v := range c.cfg.Attributes {
		attrs[k] = v
	}
	for k, v := range c.cfg.Labels {
		attrs[ddi.AttrLabelPrefix+k] = v
	}
	if c.cfg.Channel != "" {
		attrs[ddi.AttrLabelPrefix+"channel"] = c.cfg.Channel
	}
	if v := c.Version(); v != "" {
		attrs[ddi.AttrVersion] = v
	}
	return attrs
}

func (c *Client) sendConfigData(ctx context.Context, href string) error {
	return c.do(ctx, http.MethodPut, href, ddi.ConfigData{Mode: ddi.ModeMerge, Data: c.attributes()}, nil)
}

// handleCancel answers a cancel request: a download in progress (or an
// update not yet started) is canceled; an install that has begun is not,
// and the device says so.
func (c *Client) handleCancel(ctx context.Context, href string) error {
	var ca ddi.CancelAction
	if err := c.do(ctx, http.MethodGet, href, nil, &ca); err != nil {
		return fmt.Errorf("cancel action: %w", err)
	}
	stopID := ca.CancelAction.StopID
	if stopID == "" {
		stopID = ca.ID
	}
	c.mu.Lock()
	j := c.job
	c.mu.Unlock()
	accept := true
	if j != nil && j.u.ActionID == stopID {
		accept = j.tryCancel()
		if accept {
			<-j.done
		}
	}
	st := ddi.Status{Execution: ddi.ExecClosed, Result: &ddi.Result{Finished: ddi.FinishedSuccess}, Details: []string{"update canceled by the device"}}
	if !accept {
		st = ddi.Status{Execution: ddi.ExecRejected, Result: &ddi.Result{Finished: ddi.FinishedNone}, Details: []string{"installation already started; cannot cancel"}}
	} else if c.journal.ActionID == stopID {
		c.mu.Lock()
		c.journal.Phase, c.journal.Result, c.journal.Reported = phaseDone, resultCanceled, true
		c.journal.save(c.cfg.StateDir)
		c.mu.Unlock()
		removeDownloads(c.cfg.StateDir, stopID)
	}
	c.log.Info("answering cancel request", "action", stopID, "accepted", accept)
	return c.do(ctx, http.MethodPost, href+"/feedback", ddi.Feedback{Status: &st}, nil)
}

// handleDeployment fetches the deployment and starts, resumes or updates
// the job that runs it.
func (c *Client) handleDeployment(ctx context.Context, href string) (*job, error) {
	var db ddi.DeploymentBase
	if err := c.do(ctx, http.MethodGet, href, nil, &db); err != nil {
		return nil, fmt.Errorf("deployment: %w", err)
	}
	u := c.toUpdate(db)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.job != nil {
		if c.job.u.ActionID == u.ActionID {
			c.job.refresh(u)
			return c.job, nil
		}
		return nil, nil // the server will cancel the old one first
	}
	// A finished action the server still offers lacks our final report.
	if c.journal.ActionID == u.ActionID && c.journal.Phase == phaseDone {
		c.unreported = append(c.unreported, pendingReport{actionID: u.ActionID, status: c.journal.finalStatus()})
		return nil, nil
	}
	j := newJob(c, u)
	c.job = j
	go j.run(context.WithoutCancel(ctx))
	return j, nil
}

func (c *Client) toUpdate(db ddi.DeploymentBase) *Update {
	u := &Update{ActionID: db.ID, Download: db.Deployment.Download, Update: db.Deployment.Update,
		MaintenanceWindow: db.Deployment.MaintenanceWindow, client: c, Type: "binary"}
	for i, ch := range db.Deployment.Chunks {
		if i == 0 {
			u.Name, u.Version, u.Part = ch.Name, ch.Version, ch.Part
			for _, kv := range ch.Metadata {
				switch kv.Key {
				case "type":
					u.Type = kv.Value
				case "release.name":
					u.Name = kv.Value
				case "release.version":
					u.Version = kv.Value
				}
			}
		}
		u.Modules = append(u.Modules, Module{Name: ch.Name, Version: ch.Version, Part: ch.Part, First: len(u.Artifacts), Count: len(ch.Artifacts)})
		for _, a := range ch.Artifacts {
			art := Artifact{Filename: a.Filename, Size: a.Size, SHA256: a.Hashes.SHA256, SHA1: a.Hashes.SHA1, MD5: a.Hashes.MD5}
			if a.Links.DownloadHTTP != nil {
				art.URL = a.Links.DownloadHTTP.Href
			}
			if a.Links.Download != nil && (art.URL == "" || strings.HasPrefix(a.Links.Download.Href, "https:")) {
				art.URL = a.Links.Download.Href
			}
			u.Artifacts = append(u.Artifacts, art)
		}
	}
	return u
}

// pendingReport is a final feedback that could not be delivered yet.
type pendingReport struct {
	actionID string
	status   ddi.Status
}

func (c *Client) feedback(ctx context.Context, actionID string, st ddi.Status) error {
	url := c.base() + "/deploymentBase/" + actionID + "/feedback"
	return c.do(ctx, http.MethodPost, url, ddi.Feedback{Status: &st}, nil)
}

// flushReports retries final reports that failed to send.
func (c *Client) flushReports(ctx context.Context) {
	c.mu.Lock()
	pending := c.unreported
	c.unreported = nil
	c.mu.Unlock()
	for i, p := range pending {
		err := c.feedback(ctx, p.actionID, p.status)
		var se *statusError
		if err != nil && !(asStatus(err, &se) && (se.Status == http.StatusGone || se.Status == http.StatusNotFound)) {
			c.mu.Lock()
			c.unreported = append(c.unreported, pending[i:]...)
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		if c.journal.ActionID == p.actionID {
			c.journal.Reported = true
			c.journal.save(c.cfg.StateDir)
		}
		c.mu.Unlock()
	}
}

// Event is a report sent with SendEvent.
type Event struct {
	// ActionID defaults to the update in progress.
	ActionID  string
	Execution string // a ddi.Exec* value; default "proceeding"
	Finished  string // a ddi.Finished* value; default "none"
	Details   []string
	Code      *int
	// Cnt and Of report progress.
	Cnt, Of int
}

// SendEvent reports anything else about an update to the server, as DDI
// feedback.
func (c *Client) SendEvent(ctx context.Context, e Event) error {
	if e.ActionID == "" {
		c.mu.Lock()
		if c.job != nil {
			e.ActionID = c.job.u.ActionID
		}
		c.mu.Unlock()
	}
	if e.ActionID == "" {
		return ErrNoAction
	}
	if e.Execution == "" {
		e.Execution = ddi.ExecProceeding
	}
	if e.Finished == "" {
		e.Finished = ddi.FinishedNone
	}
	st := ddi.Status{Execution: e.Execution, Result: &ddi.Result{Finished: e.Finished}, Details: e.Details, Code: e.Code}
	if e.Of > 0 {
		st.Result.Progress = &ddi.Progress{Cnt: e.Cnt, Of: e.Of}
	}
	return c.feedback(ctx, e.ActionID, st)
}

func asStatus(err error, target **statusError) bool {
	for err != nil {
		if se, ok := err.(*statusError); ok {
			*target = se
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
