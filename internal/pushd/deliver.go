package pushd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/push"
)

// delivery is one push deployment being driven to its end: the node it
// goes to and how to tell the core what the node said.
type delivery struct {
	p    *Pool
	d    flotilla.Deployment
	dev  flotilla.Device
	a    flotilla.Artifact
	node *push.Client
	ip   string
}

// report tells the core what the node did, as DDI feedback would: the
// core applies the same transitions as for a polling device.
func (dl *delivery) report(ctx context.Context, f flotilla.Feedback, cancel bool, version string) error {
	d, err := dl.p.core.Report(context.WithoutCancel(ctx), core.RefOf(dl.d), core.Report{Feedback: f, Cancel: cancel, Version: version, NodeIP: dl.ip})
	if err == nil {
		dl.d = d
	}
	return err
}

// fail ends the delivery for a reason the server found.
func (dl *delivery) fail(ctx context.Context, why string) {
	if d, err := dl.p.core.FailDeployment(context.WithoutCancel(ctx), core.RefOf(dl.d), why, dl.ip); err == nil {
		dl.d = d
	}
}

// progress records bytes the node holds, without a state change.
func (dl *delivery) progress(ctx context.Context, n int64) {
	if d, err := dl.p.core.ReportProgress(context.WithoutCancel(ctx), core.RefOf(dl.d), int(n), int(dl.a.Size), dl.ip); err == nil {
		dl.d = d
	}
}

// accepted reports that the node took the update and is receiving it,
// unless the deployment is past that already (see core.ReportFirstStep).
func (dl *delivery) accepted(ctx context.Context, received int64) error {
	d, err := dl.p.core.ReportFirstStep(context.WithoutCancel(ctx), core.RefOf(dl.d), dl.acceptance(received), dl.ip)
	if err == nil {
		dl.d = d
	}
	return err
}

// acceptance is the feedback for a node that took the update.
func (dl *delivery) acceptance(received int64) flotilla.Feedback {
	return flotilla.Feedback{Execution: flotilla.ExecDownload, Cnt: int(received), Of: int(dl.a.Size), Details: []string{"node accepted the update"}}
}

// stepsTo returns the steps between a deployment's state from and where a
// node that has its bytes is, and the state they lead to, so that a push
// deployment passes through the states a polling device reports:
// downloading, downloaded (verifying), installing (applying).
func (dl *delivery) stepsTo(nodeState string, from flotilla.DeploymentState) ([]flotilla.Step, flotilla.DeploymentState) {
	if nodeState != push.StateVerifying && nodeState != push.StateApplying {
		return nil, from
	}
	now, size := time.Now(), int(dl.a.Size)
	var out []flotilla.Step
	if from == flotilla.StatePending {
		out = append(out, flotilla.Step{At: now, Feedback: dl.acceptance(0)})
		from = flotilla.StateDownloading
	}
	if from == flotilla.StateDownloading {
		out = append(out, flotilla.Step{At: now, Feedback: flotilla.Feedback{Execution: flotilla.ExecDownloaded, Cnt: size, Of: size, Details: []string{"node is verifying"}}})
		from = flotilla.StateDownloaded
	}
	if nodeState == push.StateApplying && from == flotilla.StateDownloaded {
		out = append(out, flotilla.Step{At: now, Feedback: flotilla.Feedback{Execution: flotilla.ExecProceeding, Cnt: size, Of: size, Details: []string{"node is applying"}}})
		from = flotilla.StateInstalling
	}
	return out, from
}

// outcome is the feedback for a node whose update ended, and the version
// it runs; ok is false while it has not ended.
func outcome(st push.Status, size int64) (f flotilla.Feedback, version string, ok bool) {
	switch st.State {
	case push.StateComplete:
		return flotilla.Feedback{Execution: flotilla.ExecClosed, Finished: flotilla.FinishedSuccess, Cnt: int(size), Of: int(size),
			Details: []string{"node runs " + st.Version}}, st.Version, true
	case push.StateFailed:
		return flotilla.Feedback{Execution: flotilla.ExecClosed, Finished: flotilla.FinishedFailure, Details: []string{"node: " + st.Error}}, "", true
	case push.StateAborted:
		return flotilla.Feedback{Execution: flotilla.ExecCanceled, Details: []string{"node aborted the update"}}, "", true
	}
	return flotilla.Feedback{}, "", false
}

// holdFor bounds how long a delivery keeps the steps it saw unwritten.
const holdFor = time.Second

// follow watches a node that has its bytes until its update ends, for at
// most holdFor, and writes what it saw as one change: a node that verifies
// and applies within that time costs one write instead of three. Nothing
// is lost to a crash meanwhile that the node does not still know: the
// next delivery catches up from the node's state. It reports whether the
// update ended.
func (dl *delivery) follow(ctx context.Context, st push.Status) bool {
	p := dl.p
	var steps []flotilla.Step
	state := dl.d.State
	wait, deadline := p.cfg.Poll/32, time.Now().Add(holdFor)
	for {
		more, next := dl.stepsTo(st.State, state)
		steps, state = append(steps, more...), next
		if f, version, ok := outcome(st, dl.a.Size); ok {
			dl.write(ctx, append(steps, flotilla.Step{Feedback: f, At: time.Now()}), version)
			return true
		}
		busy := st.State == push.StateVerifying || st.State == push.StateApplying
		if !busy || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, wait)
		now, err := dl.node.Status(ctx)
		if err != nil || now.ID != dl.d.UpdateID {
			break
		}
		wait = min(2*wait, p.cfg.Poll)
		if now.State != st.State {
			wait = p.cfg.Poll / 32 // moved on: ask again soon
		}
		st = now
	}
	dl.write(ctx, steps, "")
	return false
}

// write records steps as one change.
func (dl *delivery) write(ctx context.Context, steps []flotilla.Step, version string) {
	if len(steps) == 0 {
		return
	}
	if d, err := dl.p.core.ReportSteps(context.WithoutCancel(ctx), core.RefOf(dl.d), steps, version, dl.ip); err == nil {
		dl.d = d
	}
}

// deliver drives one push deployment to its end, or until ctx ends, and
// returns it as it last saw it. fresh marks an update id the claim just
// minted.
func (p *Pool) deliver(ctx context.Context, d flotilla.Deployment, fresh bool) flotilla.Deployment {
	dl := &delivery{p: p, d: d, ip: d.DeviceID}
	dev, err := p.st.GetDevice(ctx, d.Tenant, d.DeviceID)
	if err != nil {
		dl.fail(ctx, "device not found")
		return dl.d
	}
	dl.dev, dl.ip = dev, NodeIP(dev.Address, dev.ID)
	if dl.node, err = p.node(dev); err != nil {
		dl.fail(ctx, flotilla.ErrorMessage(err))
		return dl.d
	}
	if dl.a, err = p.st.GetArtifactByID(ctx, d.Tenant, d.ArtifactID); err != nil {
		dl.fail(ctx, "artifact no longer exists")
		return dl.d
	}
	dl.run(ctx, fresh)
	return dl.d
}

// run drives the delivery by asking the node where it stands. A fresh
// update id (fresh) is one the node cannot know yet: it is offered at
// once instead of asking first.
func (dl *delivery) run(ctx context.Context, fresh bool) {
	p, node := dl.p, dl.node
	// told is what the node said in answer to the last offer or payload:
	// its status, without asking again.
	var told *push.Status
	if fresh {
		told = &push.Status{State: push.StateIdle}
	}
	lastContact := time.Now()
	// wait backs off from a few milliseconds to cfg.Poll while the node
	// stays in one state, and starts over when it moves on.
	wait, seen := p.cfg.Poll/32, ""
	var reported time.Time // last progress written while the node fetches
	for ctx.Err() == nil {
		if dl.d.State.Terminal() {
			// Canceled on the server meanwhile: make sure the node stops too.
			if st, err := node.Status(ctx); err == nil && st.ID == dl.d.UpdateID && !push.Terminal(st.State) {
				node.Abort(ctx, dl.d.UpdateID)
			}
			return
		}
		if dl.d.State == flotilla.StateCancelRequested {
			told = nil
			if dl.abort(ctx) {
				return
			}
			dl.reload(ctx)
			continue
		}
		var st push.Status
		var err error
		if told != nil {
			st, told = *told, nil
		} else {
			st, err = node.Status(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if time.Since(lastContact) > p.cfg.Unreachable {
				p.log.Warn("push node unreachable", "device", dl.dev.ID, "address", dl.dev.Address, "err", err)
				dl.fail(ctx, fmt.Sprintf("node unreachable for %s", p.cfg.Unreachable))
				return
			}
			sleep(ctx, 2*time.Second)
			dl.reload(ctx)
			continue
		}
		lastContact = time.Now()
		if st.State != seen {
			wait, seen = p.cfg.Poll/32, st.State
		}
		if st.ID != dl.d.UpdateID {
			if dl.d.State != flotilla.StatePending && dl.d.State != flotilla.StateDownloading {
				dl.fail(ctx, fmt.Sprintf("node no longer knows update %s (it reports %q)", dl.d.UpdateID, st.ID))
				return
			}
			if !push.Terminal(st.State) {
				// Busy with another update: wait our turn.
				sleep(ctx, p.cfg.Poll*4)
				dl.reload(ctx)
				continue
			}
			answer, err := node.Start(ctx, p.startRequest(ctx, dl.d.UpdateID, dl.a))
			offered := fresh
			fresh = false
			if err != nil {
				var ne *push.NodeError
				if offered && errors.As(err, &ne) && ne.Status == http.StatusConflict {
					continue // busy with another update after all: ask, and wait our turn
				}
				if errors.As(err, &ne) && (ne.Status == http.StatusConflict || ne.Status == http.StatusUnprocessableEntity || ne.Status == http.StatusBadRequest) {
					dl.fail(ctx, "node refused the update: "+ne.Message)
					return
				}
				sleep(ctx, time.Second)
				continue
			}
			if dl.d.State == flotilla.StatePending && dl.accepted(ctx, 0) != nil {
				return
			}
			told = &answer
			continue
		}
		switch st.State {
		case push.StateReceiving:
			if dl.d.State == flotilla.StatePending && dl.accepted(ctx, st.BytesReceived) != nil {
				return
			}
			if st.Fetching {
				// The node pulls the bytes from object storage itself.
				if st.BytesReceived > 0 && time.Since(reported) >= time.Second {
					dl.progress(ctx, st.BytesReceived)
					reported = time.Now()
				}
				sleep(ctx, wait)
				wait = min(2*wait, p.cfg.Poll)
				dl.reload(ctx)
				continue
			}
			answer, err := dl.send(ctx, st.BytesReceived)
			switch {
			case err == nil:
				told = &answer
			case ctx.Err() == nil:
				p.log.Debug("payload interrupted; resuming", "deployment", dl.d.ID, "err", err)
				sleep(ctx, 500*time.Millisecond)
			}
		case push.StateVerifying, push.StateApplying, push.StateComplete, push.StateFailed, push.StateAborted:
			if dl.follow(ctx, st) {
				return
			}
		default:
			sleep(ctx, wait)
			wait = min(2*wait, p.cfg.Poll)
		}
		dl.reload(ctx)
	}
}

func (dl *delivery) reload(ctx context.Context) {
	if nd, err := dl.p.st.GetDeployment(ctx, dl.d.Tenant, dl.d.ID); err == nil {
		dl.d = nd
	}
}

// abort asks the node to honour a cancel request and reports its answer as
// the answer to that request; it reports whether the delivery is over.
func (dl *delivery) abort(ctx context.Context) bool {
	st, err := dl.node.Abort(ctx, dl.d.UpdateID)
	var ne *push.NodeError
	switch {
	case err == nil && st.State == push.StateAborted:
		dl.report(ctx, flotilla.Feedback{Execution: flotilla.ExecCanceled, Details: []string{"node aborted the update"}}, true, "")
		return true
	case errors.As(err, &ne) && ne.Status == http.StatusConflict:
		// Too late (applying, or a different id): the delivery continues
		// from the state the cancel interrupted.
		dl.report(ctx, flotilla.Feedback{Execution: flotilla.ExecRejected, Details: []string{"node refused to abort: " + ne.Message}}, true, "")
		return false
	}
	sleep(ctx, time.Second)
	return false
}

// send streams the artifact from offset, reporting progress as it goes.
func (dl *delivery) send(ctx context.Context, offset int64) (push.Status, error) {
	obj, err := dl.p.core.OpenArtifact(ctx, dl.a)
	if err != nil {
		return push.Status{}, err
	}
	defer obj.Close()
	if _, err := obj.Seek(offset, io.SeekStart); err != nil {
		return push.Status{}, err
	}
	// The first progress is written a second into the stream, not at its
	// first read: a payload sent within a second costs no write for it.
	pr := &progress{r: obj, n: offset, last: time.Now(), every: time.Second, fn: func(n int64) { dl.progress(ctx, n) }}
	return dl.node.SendPayload(ctx, dl.d.UpdateID, pr, offset, dl.a.Size)
}

type progress struct {
	r     io.Reader
	n     int64
	last  time.Time
	every time.Duration
	fn    func(int64)
}

func (p *progress) Read(b []byte) (int, error) {
	k, err := p.r.Read(b)
	p.n += int64(k)
	if time.Since(p.last) > p.every {
		p.last = time.Now()
		p.fn(p.n)
	}
	return k, err
}
