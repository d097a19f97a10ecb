package dmf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
)

// badMessage is a message that will never be processed: it goes to the
// dead-letter queue with the reason.
type badMessage struct{ reason string }

func (b *badMessage) Error() string { return b.reason }

func bad(format string, args ...any) error { return &badMessage{reason: fmt.Sprintf(format, args...)} }

// header reads a string header.
func header(d amqp.Delivery, name string) string {
	switch v := d.Headers[name].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// handle processes one delivery and settles it: acknowledged after its
// change committed (or when it changed nothing), dead-lettered with the
// reason when it can never be processed, requeued after a pause when the
// server could not process it now.
func (l *Link) handle(ctx context.Context, ch *amqp.Channel, acks *acker, d amqp.Delivery) {
	err := l.process(ctx, ch, d)
	kind := header(d, "type")
	if t := header(d, "topic"); t != "" {
		kind = t
	}
	switch kind {
	case TypeThingCreated, TypeThingRemoved, TypePing, TopicUpdateActionStatus, TopicUpdateAttributes:
	default:
		kind = "other" // bounded label values
	}
	var b *badMessage
	switch {
	case err == nil:
		l.count("in", kind, "processed")
		acks.tags <- settled{tag: d.DeliveryTag, ack: true}
	case errors.As(err, &b):
		l.count("in", kind, "deadlettered")
		l.log.Warn("DMF message dead-lettered", "reason", b.reason, "type", header(d, "type"), "thingId", header(d, "thingId"))
		if derr := l.deadLetter(ctx, ch, d, b.reason); derr != nil {
			d.Nack(false, false) // the queue's own dead-letter exchange, without our reason
			acks.tags <- settled{tag: d.DeliveryTag}
			return
		}
		acks.tags <- settled{tag: d.DeliveryTag, ack: true}
	default:
		l.count("in", kind, "requeued")
		l.log.Error("DMF message not processed; it will be redelivered", "type", header(d, "type"), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		d.Nack(false, true)
		acks.tags <- settled{tag: d.DeliveryTag}
	}
}

// deadLetter publishes the message to the dead-letter exchange with the
// reason.
func (l *Link) deadLetter(ctx context.Context, ch *amqp.Channel, d amqp.Delivery, reason string) error {
	h := amqp.Table{}
	for k, v := range d.Headers {
		h[k] = v
	}
	h["x-flotilla-reason"] = reason
	return ch.PublishWithContext(ctx, l.cfg.DeadLetterExchange, "", false, false, amqp.Publishing{
		Headers: h, ContentType: d.ContentType, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo, MessageId: d.MessageId,
		DeliveryMode: amqp.Persistent, Timestamp: time.Now(), Body: d.Body,
	})
}

func (l *Link) process(ctx context.Context, ch *amqp.Channel, d amqp.Delivery) error {
	typ, thing := header(d, "type"), header(d, "thingId")
	tenant := strings.ToLower(header(d, "tenant"))
	if typ == "" {
		return bad("missing header type")
	}
	if tenant == "" {
		return bad("missing header tenant")
	}
	if l.cfg.Tenant != "" && tenant != l.cfg.Tenant {
		return bad("tenant %q is not served on this link (it serves %q)", tenant, l.cfg.Tenant)
	}
	switch typ {
	case TypePing:
		return l.pong(ctx, ch, d, tenant)
	case TypeThingCreated:
		return l.thingCreated(ctx, d, tenant, thing)
	case TypeThingRemoved:
		if thing == "" {
			return bad("missing header thingId")
		}
		if err := l.core.RemoveDMFDevice(ctx, tenant, thing); err != nil && !flotilla.IsCode(err, flotilla.ENotFound) {
			return err
		}
		return nil
	case TypeEvent:
		if thing == "" {
			return bad("missing header thingId")
		}
		switch topic := header(d, "topic"); topic {
		case TopicUpdateActionStatus:
			return l.actionStatus(ctx, d, tenant, thing)
		case TopicUpdateAttributes:
			return l.attributes(ctx, d, tenant, thing)
		default:
			return bad("unknown EVENT topic %q: send UPDATE_ACTION_STATUS or UPDATE_ATTRIBUTES", topic)
		}
	}
	return bad("unknown message type %q: send THING_CREATED, THING_REMOVED, EVENT or PING", typ)
}

// decode reads a JSON body; an empty body is allowed where the body is
// optional.
func decode(d amqp.Delivery, v any, optional bool) error {
	if len(d.Body) == 0 && optional {
		return nil
	}
	if err := json.Unmarshal(d.Body, v); err != nil {
		return bad("body is not the expected JSON: %v", err)
	}
	return nil
}

func (l *Link) thingCreated(ctx context.Context, d amqp.Delivery, tenant, thing string) error {
	if thing == "" {
		return bad("missing header thingId")
	}
	if d.ReplyTo == "" {
		return bad("THING_CREATED without reply_to: name the exchange the device listens on")
	}
	var body ThingCreated
	if err := decode(d, &body, true); err != nil {
		return err
	}
	if _, err := l.core.RegisterDMFDevice(ctx, tenant, thing, l.cfg.Name, d.ReplyTo, body.Name); err != nil {
		if code := flotilla.ErrorCode(err); code == flotilla.EInvalid || code == flotilla.ENotFound {
			return bad("cannot register %q: %v", thing, err)
		}
		return err
	}
	if u := body.AttributeUpdate; u != nil {
		return l.applyAttributes(ctx, tenant, thing, *u)
	}
	if len(body.Attributes) > 0 {
		return l.applyAttributes(ctx, tenant, thing, AttributeUpdate{Attributes: body.Attributes})
	}
	l.Wake()
	return nil
}

func (l *Link) attributes(ctx context.Context, d amqp.Delivery, tenant, thing string) error {
	var u AttributeUpdate
	if err := decode(d, &u, false); err != nil {
		return err
	}
	return l.applyAttributes(ctx, tenant, thing, u)
}

func (l *Link) applyAttributes(ctx context.Context, tenant, thing string, u AttributeUpdate) error {
	mode := strings.ToLower(u.Mode)
	if mode == "" {
		mode = "merge"
	}
	err := l.core.ConfigData(ctx, core.DeviceIdentity{Tenant: tenant, DeviceID: thing}, mode, u.Attributes)
	if code := flotilla.ErrorCode(err); code == flotilla.EInvalid || code == flotilla.ENotFound {
		return bad("attributes of %q: %v", thing, err)
	}
	return err
}

// feedbackFor maps a DMF action status onto DDI feedback; cancel says it
// answers a cancel request.
func feedbackFor(s ActionStatus) (f flotilla.Feedback, cancel bool, err error) {
	f.Details, f.Code = s.Message, s.Code
	switch s.ActionStatus {
	case StatusDownload:
		f.Execution, f.Finished = flotilla.ExecDownload, flotilla.FinishedNone
	case StatusRetrieved, StatusRunning, StatusWarning:
		f.Execution, f.Finished = flotilla.ExecProceeding, flotilla.FinishedNone
	case StatusDownloaded:
		f.Execution, f.Finished = flotilla.ExecDownloaded, flotilla.FinishedNone
	case StatusFinished:
		f.Execution, f.Finished = flotilla.ExecClosed, flotilla.FinishedSuccess
	case StatusError:
		f.Execution, f.Finished = flotilla.ExecClosed, flotilla.FinishedFailure
	case StatusCanceled:
		f.Execution, f.Finished, cancel = flotilla.ExecClosed, flotilla.FinishedSuccess, true
	case StatusCancelRejected:
		f.Execution, f.Finished, cancel = flotilla.ExecRejected, flotilla.FinishedNone, true
	default:
		return f, false, bad("unknown actionStatus %q", s.ActionStatus)
	}
	if len(f.Details) == 0 {
		f.Details = []string{strings.ToLower(s.ActionStatus) + " (DMF)"}
	}
	return f, cancel, nil
}

// parseStatus reads an UPDATE_ACTION_STATUS body into the feedback it
// means; a *badMessage when it cannot.
func parseStatus(body []byte) (ActionStatus, flotilla.Feedback, bool, error) {
	var s ActionStatus
	if err := json.Unmarshal(body, &s); err != nil {
		return s, flotilla.Feedback{}, false, bad("body is not the expected JSON: %v", err)
	}
	if s.ActionID <= 0 {
		return s, flotilla.Feedback{}, false, bad("actionId is missing")
	}
	f, cancel, err := feedbackFor(s)
	if err == nil {
		err = validFeedback(f)
	}
	return s, f, cancel, err
}

// validFeedback applies the checks every transport's feedback gets.
func validFeedback(f flotilla.Feedback) error {
	if err := flotilla.ValidateFeedback(f); err != nil {
		return bad("status: %v", err)
	}
	return nil
}

// actionStatus applies a status. A status that arrives again (a
// redelivery) or too late (the action already ended) changes nothing.
func (l *Link) actionStatus(ctx context.Context, d amqp.Delivery, tenant, thing string) error {
	s, f, cancel, err := parseStatus(d.Body)
	if err != nil {
		return err
	}
	id := core.DeviceIdentity{Tenant: tenant, DeviceID: thing}
	if d.Redelivered && l.recorded(ctx, tenant, thing, s.ActionID, f) {
		return nil // processed before the broker lost our acknowledgement
	}
	if cancel {
		_, err = l.core.CancelFeedback(ctx, id, s.ActionID, f)
	} else {
		_, err = l.core.DeploymentFeedback(ctx, id, s.ActionID, f)
	}
	switch flotilla.ErrorCode(err) {
	case "":
		l.core.MarkSeen(tenant, thing)
		return nil
	case flotilla.EGone, flotilla.EConflict:
		return nil // already recorded, or the action ended: idempotent
	case flotilla.ENotFound:
		return bad("unknown action %d of %q", s.ActionID, thing)
	case flotilla.EInvalid, flotilla.ETooMany, flotilla.ETooLarge:
		return bad("status of action %d: %v", s.ActionID, err)
	}
	return err
}

// recorded reports whether the deployment's last entry from the device is
// this status already.
func (l *Link) recorded(ctx context.Context, tenant, thing string, action int64, f flotilla.Feedback) bool {
	d, err := l.st.GetDeployment(ctx, tenant, action)
	if err != nil || d.DeviceID != thing {
		return false
	}
	for i := len(d.History) - 1; i >= 0; i-- {
		if e := d.History[i]; e.Source == flotilla.SourceDevice {
			return e.Execution == f.Execution && e.Finished == f.Finished && slices.Equal(e.Details, f.Details)
		}
	}
	return false
}

// pong answers a PING on its reply exchange, keeping its correlation id.
func (l *Link) pong(ctx context.Context, ch *amqp.Channel, d amqp.Delivery, tenant string) error {
	if d.ReplyTo == "" {
		return bad("PING without reply_to")
	}
	err := l.send(ctx, d.ReplyTo, amqp.Publishing{
		Headers:     amqp.Table{"type": TypePingResponse, "tenant": tenant},
		ContentType: "text/plain", CorrelationId: d.CorrelationId, Timestamp: time.Now(),
		Body: []byte(strconv.FormatInt(time.Now().UnixMilli(), 10)),
	})
	if errors.Is(err, errUndeliverable) {
		return bad("PING reply_to %q: %v", d.ReplyTo, err)
	}
	return err
}
