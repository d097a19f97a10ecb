package dmf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/maintenance"
)

// errUndeliverable: the broker took the message but could not route it
// (no such exchange, or no queue bound to it).
var errUndeliverable = errors.New("undeliverable")

// lease is how long a claimed outbox message is this replica's to publish.
const lease = 5 * time.Second

// send publishes one message and waits for the broker's confirm: a message
// that could not be routed is an error, so that it stays in the outbox.
// One message at a time, so that a returned message is this one.
func (l *Link) send(ctx context.Context, exchange string, msg amqp.Publishing) error {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	ch, returns, err := l.publisher()
	if err != nil {
		return err
	}
	msg.DeliveryMode = amqp.Persistent
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, "", true, false, msg)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	acked, err := conf.WaitContext(wctx)
	if err != nil || !acked {
		if ch.IsClosed() {
			// The broker closes the channel for an exchange that does
			// not exist.
			return fmt.Errorf("%w: exchange %q: the broker closed the channel", errUndeliverable, exchange)
		}
		return fmt.Errorf("the broker did not confirm the message: %v", err)
	}
	select {
	case r := <-returns:
		return fmt.Errorf("%w: exchange %q: %s", errUndeliverable, exchange, r.ReplyText)
	default:
	}
	return nil
}

// publishLoop publishes the outbox of this link's devices, oldest first.
func (l *Link) publishLoop(ctx context.Context) {
	t := time.NewTicker(l.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-t.C:
		}
		if !l.connected.Load() {
			continue
		}
		for ctx.Err() == nil {
			now := time.Now()
			msgs, err := l.st.ClaimDMF(ctx, l.cfg.Owner, l.cfg.Name, now, now.Add(lease), 100)
			if err != nil {
				l.log.Error("read the DMF outbox", "err", err)
				break
			}
			failed := false
			for _, m := range msgs {
				if err := l.publish(ctx, m); err != nil {
					// It stays in the outbox and is tried again when the
					// lease ends.
					l.log.Warn("DMF message not published yet", "device", m.DeviceID, "err", err)
					failed = true
				}
			}
			if len(msgs) < 100 || failed {
				break
			}
		}
	}
}

// publish renders and sends one outbox message, then removes it. A message
// that no longer applies (the action moved on, or the same was already
// sent) is removed without sending.
func (l *Link) publish(ctx context.Context, m store.DMFMessage) error {
	if m.State == store.DMFDeleted {
		err := l.send(ctx, m.Exchange, amqp.Publishing{
			Headers:   amqp.Table{"type": TypeThingDeleted, "thingId": m.DeviceID, "tenant": m.Tenant},
			MessageId: messageID(m, TypeThingDeleted), Timestamp: time.Now(),
		})
		if err != nil {
			return err
		}
		l.count("out", TypeThingDeleted, "sent")
		return l.st.DoneDMF(ctx, m.ID, 0, "", time.Now())
	}
	done := func() error { return l.st.DoneDMF(ctx, m.ID, 0, "", time.Now()) }
	dev, err := l.st.GetDevice(ctx, m.Tenant, m.DeviceID)
	if flotilla.IsCode(err, flotilla.ENotFound) || err == nil && dev.DMFExchange == "" {
		return done() // gone, or no longer a DMF device
	}
	if err != nil {
		return err
	}
	owed, err := l.owed(ctx, dev.Tenant, dev.ID)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(owed, func(o told) bool { return o.d.ID == m.DeploymentID }) {
		return done() // the action ended or says nothing new
	}
	if m.State != store.DMFResend {
		if all, err := l.allTold(ctx, owed); err != nil || all {
			if err != nil {
				return err
			}
			return done()
		}
	}
	topic, body, err := l.render(ctx, dev, owed)
	if err != nil {
		return err
	}
	// Told is fetched: a cancel from now on waits for the device's answer,
	// as after a DDI device's deploymentBase.
	for _, o := range owed {
		if o.topic != TopicCancelDownload {
			if err := l.core.MarkRetrieved(ctx, o.d.Tenant, o.d.DeviceID, o.d.ID); err != nil {
				return err
			}
		}
	}
	err = l.send(ctx, dev.DMFExchange, amqp.Publishing{
		Headers:     amqp.Table{"type": TypeEvent, "thingId": dev.ID, "tenant": dev.Tenant, "topic": topic},
		ContentType: "application/json", MessageId: messageID(m, topic), Timestamp: time.Now(), Body: body,
	})
	if err != nil {
		return err
	}
	l.count("out", topic, "sent")
	// Every action the message covered was told its topic.
	for _, o := range owed {
		id := int64(0)
		if o.d.ID == m.DeploymentID {
			id = m.ID
		}
		if err := l.st.DoneDMF(ctx, id, o.d.ID, o.topic, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// allTold reports whether every action was last told what it is owed now.
func (l *Link) allTold(ctx context.Context, owed []told) (bool, error) {
	for _, o := range owed {
		last, err := l.st.LastDMF(ctx, o.d.ID)
		if err != nil || last != o.topic {
			return false, err
		}
	}
	return true, nil
}

// told is what a device is to be told of one of its open actions.
type told struct {
	d     flotilla.Deployment
	topic string
}

// owed lists what a device is to be told now: each open action with
// something to say, cancels first, then the oldest.
func (l *Link) owed(ctx context.Context, tenant, device string) ([]told, error) {
	open, _, err := l.st.DeviceActions(ctx, tenant, device)
	if err != nil {
		return nil, err
	}
	now := l.core.Now()
	var out []told
	for _, d := range open {
		if d.Delivery != flotilla.DeliveryPull {
			continue
		}
		if t := topicFor(d, now); t != "" {
			out = append(out, told{d: d, topic: t})
		}
	}
	slices.SortStableFunc(out, func(a, b told) int {
		return cmpBool(b.topic == TopicCancelDownload, a.topic == TopicCancelDownload)
	})
	return out, nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// messageID is the same for a message sent again after a crash, so that a
// client can tell.
func messageID(m store.DMFMessage, topic string) string {
	return fmt.Sprintf("flotilla-%s-%s-%d-%s", m.Tenant, m.DeviceID, m.DeploymentID, topic)
}

// topicFor is what a DMF device is told of an open deployment: install,
// download only, or download and wait for the window; cancel; "" when
// there is nothing to say (it moved on, or ended).
func topicFor(d flotilla.Deployment, now time.Time) string {
	switch d.State {
	case flotilla.StateCancelRequested:
		return TopicCancelDownload
	case flotilla.StatePending, flotilla.StateDownloading, flotilla.StateDownloaded, flotilla.StateInstalling:
	default:
		return ""
	}
	if d.Type == flotilla.TypeDownloadOnly {
		return TopicDownload
	}
	if d.Window != nil {
		if w, err := maintenance.Parse(*d.Window); err == nil && !w.Available(now) {
			return TopicDownloadAndSkip
		}
	}
	return TopicDownloadAndInstall
}

// render builds the message: one action's own topic, or MULTI_ACTION for
// several (hawkBit's multi-assignment form: a list of topic, action and
// weight, the first the most urgent).
func (l *Link) render(ctx context.Context, dev flotilla.Device, owed []told) (string, []byte, error) {
	if len(owed) == 1 {
		body, err := l.action(ctx, dev, owed[0])
		if err != nil {
			return "", nil, err
		}
		b, err := json.Marshal(body)
		return owed[0].topic, b, err
	}
	var elems []MultiActionElement
	for i, o := range owed {
		body, err := l.action(ctx, dev, o)
		if err != nil {
			return "", nil, err
		}
		elems = append(elems, MultiActionElement{Topic: o.topic, Action: body, Weight: 1000 - i})
	}
	b, err := json.Marshal(elems)
	return TopicMultiAction, b, err
}

// action is the body for one action: its id for a cancel, else the
// download request with its modules and links.
func (l *Link) action(ctx context.Context, dev flotilla.Device, o told) (any, error) {
	d := o.d
	if o.topic == TopicCancelDownload {
		return ActionID{ActionID: d.ID}, nil
	}
	a, err := l.core.DeployedRelease(ctx, d.Tenant, d.ArtifactID)
	if err != nil {
		return nil, err
	}
	req := DownloadRequest{ActionID: d.ID, TargetSecurityToken: l.core.DeviceSecret(dev), SoftwareModules: []SoftwareModule{}}
	base := l.cfg.PublicURL + "/" + url.PathEscape(dev.Tenant) + "/controller/v1/" + url.PathEscape(dev.ID) + "/softwaremodules/"
	for _, m := range a.Modules {
		sm := SoftwareModule{ModuleID: m.ID, ModuleType: m.Type, ModuleVersion: m.Version, Artifacts: []Artifact{},
			Metadata: []KeyValue{{Key: "name", Value: m.Name}, {Key: "release.name", Value: a.Name}, {Key: "release.version", Value: a.Version}}}
		for _, f := range m.Files {
			link := base + strconv.FormatInt(m.ID, 10) + "/artifacts/" + url.PathEscape(f.Filename)
			sm.Artifacts = append(sm.Artifacts, Artifact{Filename: f.Filename, Size: f.Size,
				URLs:   map[string]string{"HTTP": link, "HTTPS": link},
				Hashes: map[string]string{"md5": f.MD5, "sha1": f.SHA1, "sha256": f.SHA256}})
		}
		req.SoftwareModules = append(req.SoftwareModules, sm)
	}
	return req, nil
}

// windowLoop owes a DMF device a new message when its maintenance window
// opens or closes: DOWNLOAD_AND_SKIP becomes DOWNLOAD_AND_INSTALL the
// moment the window opens.
func (l *Link) windowLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !l.connected.Load() {
			continue
		}
		open, err := l.st.OpenDMFWindows(ctx)
		if err != nil {
			l.log.Error("DMF window sweep", "err", err)
			continue
		}
		now := l.core.Now()
		woke := false
		for _, d := range open {
			last, err := l.st.LastDMF(ctx, d.ID)
			if err != nil || last == "" {
				continue // never sent yet: the outbox has it
			}
			owed, err := l.owed(ctx, d.Tenant, d.DeviceID)
			if err != nil || len(owed) == 0 {
				continue
			}
			if all, err := l.allTold(ctx, owed); err != nil || all {
				continue // unchanged
			}
			if err := l.st.EnqueueDMF(ctx, store.DMFMessage{Tenant: d.Tenant, DeviceID: d.DeviceID, DeploymentID: d.ID, State: string(d.State), CreatedAt: now}); err == nil {
				woke = true
			}
		}
		if woke {
			l.Wake()
		}
	}
}
