// Package dmfclient is the other end of hawkBit's DMF API: a gateway that
// announces things to the server and receives their instructions. The
// simulator and the tests use it; it is what an LwM2M server or Eclipse
// Hono's hawkBit connector does.
package dmfclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flotilla-ota/flotilla/internal/dmf"
)

// Message is one message from the server.
type Message struct {
	Type, Topic, Thing, Tenant string
	CorrelationID, MessageID   string
	Body                       []byte
}

// Download decodes a DOWNLOAD_AND_INSTALL, DOWNLOAD or DOWNLOAD_AND_SKIP
// body.
func (m Message) Download() (dmf.DownloadRequest, error) {
	var r dmf.DownloadRequest
	err := json.Unmarshal(m.Body, &r)
	return r, err
}

// ActionID reads the action id of any action message.
func (m Message) ActionID() int64 {
	var a dmf.ActionID
	json.Unmarshal(m.Body, &a)
	return a.ActionID
}

// Gateway is a connection to the broker that sends to the server's
// exchange and receives on its own reply exchange.
type Gateway struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	exchange string // the server's
	reply    string // ours
	queue    string
	msgs     chan Message
	mu       sync.Mutex // one publish at a time
}

// Dial connects, declares the reply exchange and a queue bound to it, and
// starts receiving. exchange is the server's receiving exchange
// (dmf.exchange); reply names this gateway's.
func Dial(url, exchange, reply string) (*Gateway, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	// Confirms: a message the broker did not take is an error, so that
	// the gateway can send it again.
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, err
	}
	g := &Gateway{conn: conn, ch: ch, exchange: exchange, reply: reply, queue: reply + ".queue", msgs: make(chan Message, 4096)}
	if err := g.Declare(); err != nil {
		conn.Close()
		return nil, err
	}
	in, err := ch.Consume(g.queue, "", true, false, false, false, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	go func() {
		defer close(g.msgs)
		for d := range in {
			str := func(k string) string { s, _ := d.Headers[k].(string); return s }
			g.msgs <- Message{Type: str("type"), Topic: str("topic"), Thing: str("thingId"), Tenant: str("tenant"),
				CorrelationID: d.CorrelationId, MessageID: d.MessageId, Body: d.Body}
		}
	}()
	return g, nil
}

// Declare declares the reply exchange and its queue (again). Both are
// durable: what the server sent while the gateway was away waits for it.
func (g *Gateway) Declare() error {
	if err := g.ch.ExchangeDeclare(g.reply, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return err
	}
	if _, err := g.ch.QueueDeclare(g.queue, true, false, false, false, nil); err != nil {
		return err
	}
	return g.ch.QueueBind(g.queue, "", g.reply, false, nil)
}

// Messages delivers what the server sends; closed when the connection
// ends.
func (g *Gateway) Messages() <-chan Message { return g.msgs }

// Close closes the connection.
func (g *Gateway) Close() error { return g.conn.Close() }

// Delete removes the reply exchange and its queue, then closes.
func (g *Gateway) Delete() error {
	g.ch.QueueDelete(g.queue, false, false, false)
	g.ch.ExchangeDelete(g.reply, false, false)
	return g.conn.Close()
}

// Dialed reports whether the connection is up.
func (g *Gateway) Dialed() bool { return !g.conn.IsClosed() }

// ReplyExchange is the exchange the server answers on.
func (g *Gateway) ReplyExchange() string { return g.reply }

// Send publishes a raw message to the server's exchange and waits until
// the broker has it.
func (g *Gateway) Send(ctx context.Context, headers amqp.Table, body []byte, correlationID string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.ch.PublishWithDeferredConfirmWithContext(ctx, g.exchange, "", false, false, amqp.Publishing{
		Headers: headers, ContentType: "application/json", ReplyTo: g.reply, CorrelationId: correlationID,
		DeliveryMode: amqp.Persistent, Body: body})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if ok, err := c.WaitContext(wctx); err != nil || !ok {
		return fmt.Errorf("dmfclient: the broker did not take the message (%v)", err)
	}
	return nil
}

func (g *Gateway) sendJSON(ctx context.Context, headers amqp.Table, v any) error {
	var b []byte
	if v != nil {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	return g.Send(ctx, headers, b, "")
}

// Created announces a thing (THING_CREATED).
func (g *Gateway) Created(ctx context.Context, tenant, thing, name string, attrs map[string]string) error {
	body := dmf.ThingCreated{Name: name}
	if attrs != nil {
		body.AttributeUpdate = &dmf.AttributeUpdate{Attributes: attrs, Mode: "MERGE"}
	}
	return g.sendJSON(ctx, amqp.Table{"type": dmf.TypeThingCreated, "tenant": tenant, "thingId": thing, "sender": "dmfclient"}, body)
}

// Removed says a thing is gone (THING_REMOVED).
func (g *Gateway) Removed(ctx context.Context, tenant, thing string) error {
	return g.sendJSON(ctx, amqp.Table{"type": dmf.TypeThingRemoved, "tenant": tenant, "thingId": thing}, nil)
}

// Status reports an action's status (UPDATE_ACTION_STATUS).
func (g *Gateway) Status(ctx context.Context, tenant, thing string, action int64, status string, messages ...string) error {
	return g.sendJSON(ctx, amqp.Table{"type": dmf.TypeEvent, "topic": dmf.TopicUpdateActionStatus, "tenant": tenant, "thingId": thing},
		dmf.ActionStatus{ActionID: action, ActionStatus: status, Message: messages})
}

// Attributes updates a thing's attributes (UPDATE_ATTRIBUTES; mode MERGE,
// REPLACE or REMOVE).
func (g *Gateway) Attributes(ctx context.Context, tenant, thing, mode string, attrs map[string]string) error {
	return g.sendJSON(ctx, amqp.Table{"type": dmf.TypeEvent, "topic": dmf.TopicUpdateAttributes, "tenant": tenant, "thingId": thing},
		dmf.AttributeUpdate{Attributes: attrs, Mode: mode})
}

// Ping sends a PING with a correlation id.
func (g *Gateway) Ping(ctx context.Context, tenant, correlationID string) error {
	return g.Send(ctx, amqp.Table{"type": dmf.TypePing, "tenant": tenant}, nil, correlationID)
}

// Next waits for the next message that match accepts.
func (g *Gateway) Next(ctx context.Context, timeout time.Duration, match func(Message) bool) (Message, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m, ok := <-g.msgs:
			if !ok {
				return Message{}, errors.New("dmfclient: connection closed")
			}
			if match == nil || match(m) {
				return m, nil
			}
		case <-t.C:
			return Message{}, fmt.Errorf("dmfclient: no matching message in %v", timeout)
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}
