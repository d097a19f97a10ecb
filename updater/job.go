package updater

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/ddi"
)

// job runs one update: fetch, wait for the window, apply, check health,
// report.
type job struct {
	c      *Client
	ctx    context.Context // canceled by a cancel request while fetching
	cancel context.CancelFunc

	mu          sync.Mutex
	u           *Update
	phase       string
	canceled    bool // the server canceled the update
	interrupted bool // the client is stopping; resume on the next start
	waiting     bool // parked until the maintenance window opens
	parked      chan struct{}
	proceed     chan struct{}

	done chan struct{}

	lastProgress time.Time
}

func newJob(c *Client, u *Update) *job {
	return &job{c: c, u: u, done: make(chan struct{}), parked: make(chan struct{}), proceed: make(chan struct{}, 1)}
}

// tryCancel stops the job if it has not begun installing.
func (j *job) tryCancel() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.phase == phaseApplying || j.phase == phaseChecking || j.phase == phaseDone {
		return false
	}
	j.canceled = true
	if j.cancel != nil {
		j.cancel()
	}
	return true
}

// interrupt stops a download or a wait for the window because the client
// is stopping; the journal keeps the place for the next start.
func (j *job) interrupt() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.phase == phaseApplying || j.phase == phaseChecking || j.phase == phaseDone {
		return
	}
	j.interrupted = true
	if j.cancel != nil {
		j.cancel()
	}
}

// refresh takes the server's latest view of the action, e.g. a window that
// opened.
func (j *job) refresh(u *Update) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.u.Update, j.u.Download, j.u.MaintenanceWindow = u.Update, u.Download, u.MaintenanceWindow
	if j.waiting && j.u.InstallAllowed() {
		j.waiting = false
		j.parked = make(chan struct{}) // CheckNow now waits for the install
		select {
		case j.proceed <- struct{}{}:
		default:
		}
	}
}

// park marks the job as waiting for its window.
func (j *job) park() {
	j.mu.Lock()
	j.waiting = true
	close(j.parked)
	j.mu.Unlock()
}

// parkedChan is closed while the job waits for its window.
func (j *job) parkedChan() chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.parked
}

// stopped reports whether the job should end quietly.
func (j *job) stopped() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.canceled || j.interrupted
}

func (j *job) setPhase(p string) {
	j.mu.Lock()
	j.phase = p
	j.mu.Unlock()
	c := j.c
	c.mu.Lock()
	c.journal.Phase = p
	if err := c.journal.save(c.cfg.StateDir); err != nil {
		c.log.Warn("save journal", "err", err)
	}
	c.mu.Unlock()
}

func (j *job) send(ctx context.Context, st ddi.Status) {
	if err := j.c.feedback(ctx, j.u.ActionID, st); err != nil {
		j.c.log.Warn("send feedback", "action", j.u.ActionID, "execution", st.Execution, "err", err)
	}
}

// progress reports download progress, throttled.
func (j *job) progress(done, total int64) {
	if total <= 0 || time.Since(j.lastProgress) < j.c.cfg.ProgressInterval {
		return
	}
	j.lastProgress = time.Now()
	pct := int(done * 100 / total)
	j.send(j.ctx, ddi.Status{Execution: ddi.ExecProceeding, Result: &ddi.Result{Finished: ddi.FinishedNone, Progress: &ddi.Progress{Cnt: pct, Of: 100}},
		Details: []string{fmt.Sprintf("downloaded %d of %d bytes", done, total)}})
}

func (j *job) run(ctx context.Context) {
	c := j.c
	h := c.cfg.Handler
	u := j.u
	defer func() {
		c.mu.Lock()
		c.job = nil
		c.mu.Unlock()
		close(j.done)
	}()
	j.ctx, j.cancel = context.WithCancel(ctx)
	defer j.cancel()
	u.client = c
	u.job = j

	c.mu.Lock()
	resumed := c.journal.ActionID == u.ActionID
	interrupted := resumed && (c.journal.Phase == phaseApplying || c.journal.Phase == phaseChecking)
	if !resumed {
		c.journal = journal{ActionID: u.ActionID, Phase: phaseFetching, Version: u.Version, PrevVersion: c.version}
		c.journal.save(c.cfg.StateDir)
	}
	payload := &Payload{Path: c.journal.Payload, Files: c.journal.Files}
	c.mu.Unlock()

	if interrupted {
		j.recoverInterrupted(ctx, payload)
		return
	}

	j.setPhase(phaseFetching)
	if err := c.checkSigned(j.ctx, u); err != nil {
		if j.stopped() {
			return
		}
		j.finish(ctx, resultFailure, []string{"signature check failed: " + err.Error()})
		return
	}
	j.send(ctx, ddi.Status{Execution: ddi.ExecDownload, Result: &ddi.Result{Finished: ddi.FinishedNone}, Details: []string{"downloading " + u.Name + " " + u.Version}})
	p, err := h.Fetch(j.ctx, u)
	// A connection that broke (a server replica restarting behind a load
	// balancer) is tried again, resuming the partial download.
	for try := 1; err != nil && try <= downloadRetries && transient(err) && j.ctx.Err() == nil; try++ {
		c.log.Warn("download interrupted; trying again", "try", try, "err", err)
		select {
		case <-j.ctx.Done():
		case <-time.After(time.Duration(try) * time.Second):
		}
		if j.ctx.Err() == nil {
			p, err = h.Fetch(j.ctx, u)
		}
	}
	if j.stopped() {
		return // a cancel is answered by handleCancel; a stop resumes later
	}
	if err != nil {
		if u.Signed != nil && errors.Is(err, ErrChecksum) {
			j.finish(ctx, resultFailure, []string{"signature check failed: the downloaded bytes are not the signed ones: " + err.Error()})
			return
		}
		j.finish(ctx, resultFailure, []string{"download failed: " + err.Error()})
		return
	}
	if err := c.checkPayload(u, p); err != nil {
		j.finish(ctx, resultFailure, []string{"signature check failed: " + err.Error()})
		return
	}
	payload = p
	c.mu.Lock()
	c.journal.Payload, c.journal.Files = p.Path, p.Files
	c.mu.Unlock()
	j.setPhase(phaseDownloaded)
	j.send(ctx, ddi.Status{Execution: ddi.ExecDownloaded, Result: &ddi.Result{Finished: ddi.FinishedNone}, Details: []string{"download verified"}})

	j.mu.Lock()
	allowed, window := u.InstallAllowed(), u.MaintenanceWindow
	j.mu.Unlock()
	if !allowed {
		if window == "" {
			// Download-only: the server is satisfied with the download,
			// and the payload stays for whoever installs it later.
			j.mu.Lock()
			j.phase = phaseDone
			j.mu.Unlock()
			c.mu.Lock()
			c.journal.Phase, c.journal.Result, c.journal.Details, c.journal.Reported = phaseDone, resultSuccess, []string{"downloaded (download only)"}, true
			c.journal.save(c.cfg.StateDir)
			c.mu.Unlock()
			return
		}
		c.log.Info("update downloaded; waiting for the maintenance window", "action", u.ActionID)
		j.send(ctx, ddi.Status{Execution: ddi.ExecScheduled, Result: &ddi.Result{Finished: ddi.FinishedNone}, Details: []string{"waiting for the maintenance window"}})
		j.park()
		select {
		case <-j.proceed:
		case <-j.ctx.Done():
			return
		}
	}

	j.setPhase(phaseApplying)
	j.send(ctx, ddi.Status{Execution: ddi.ExecProceeding, Result: &ddi.Result{Finished: ddi.FinishedNone}, Details: []string{"installing " + u.Name + " " + u.Version}})
	if err := h.Apply(ctx, u, payload); err != nil {
		j.finish(ctx, resultFailure, []string{"install failed: " + err.Error()})
		return
	}
	j.checkAndFinish(ctx)
}

// checkAndFinish runs the health check, if any, and reports the outcome.
func (j *job) checkAndFinish(ctx context.Context) {
	h, u := j.c.cfg.Handler, j.u
	details := []string{"installed " + u.Name + " " + u.Version}
	if hc, ok := h.(HealthChecker); ok {
		j.setPhase(phaseChecking)
		if err := hc.CheckHealth(ctx, u); err != nil {
			details = []string{"health: failed: " + err.Error()}
			if rb, ok := h.(RollBacker); ok {
				if rerr := rb.RollBack(ctx, u); rerr != nil {
					details = append(details, "roll back failed: "+rerr.Error())
				} else {
					details = append(details, "rolled back to the previous version")
				}
			}
			j.finish(ctx, resultFailure, details)
			return
		}
		details = append(details, "health: ok")
	}
	j.c.mu.Lock()
	j.c.version = u.Version
	j.c.mu.Unlock()
	j.finish(ctx, resultSuccess, details)
}

// recoverInterrupted reports the truth about an install a crash cut short.
func (j *job) recoverInterrupted(ctx context.Context, p *Payload) {
	if r, ok := j.c.cfg.Handler.(Recoverer); ok {
		if err := r.Recover(ctx, j.u, p); err != nil {
			j.finish(ctx, resultFailure, []string{"install was interrupted: " + err.Error()})
			return
		}
		j.checkAndFinish(ctx)
		return
	}
	j.finish(ctx, resultFailure, []string{"install was interrupted by a restart; state unknown"})
}

// finish records the result and reports it; a report that fails is
// retried at the next poll.
func (j *job) finish(ctx context.Context, result string, details []string) {
	c := j.c
	j.finishQuiet(result, details)
	c.mu.Lock()
	st := c.journal.finalStatus()
	c.mu.Unlock()
	err := c.feedback(ctx, j.u.ActionID, st)
	var se *statusError
	if err != nil && !(asStatus(err, &se) && se.Status/100 == 4) {
		c.log.Warn("final report failed; will retry", "action", j.u.ActionID, "err", err)
		c.mu.Lock()
		c.unreported = append(c.unreported, pendingReport{actionID: j.u.ActionID, status: st})
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.journal.Reported = true
	c.journal.save(c.cfg.StateDir)
	c.mu.Unlock()
	c.log.Info("update finished", "action", j.u.ActionID, "result", result, "details", details)
}

func (j *job) finishQuiet(result string, details []string) {
	c := j.c
	j.mu.Lock()
	j.phase = phaseDone
	j.mu.Unlock()
	c.mu.Lock()
	c.journal.Phase, c.journal.Result, c.journal.Details = phaseDone, result, details
	c.journal.save(c.cfg.StateDir)
	c.mu.Unlock()
	removeDownloads(c.cfg.StateDir, j.u.ActionID)
}
