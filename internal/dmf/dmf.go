// Package dmf speaks hawkBit's Device Management Federation API over AMQP
// (RabbitMQ), so that device-management servers and IoT gateways — LwM2M
// servers, Eclipse Hono, fleets behind a protocol gateway — drive updates
// by messages instead of polling HTTP.
//
// It is one more transport into the same core: a device that sends
// THING_CREATED is an ordinary device marked as reached over DMF, and its
// deployments, rollouts, windows and events are everyone's. Messages in
// are acknowledged only after their change is committed, and a status
// delivered twice changes nothing the second time. Messages out come from
// an outbox that the database fills in the same transaction as the change
// that calls for them; they are published after the commit, with publisher
// confirms, and removed once the broker has them — a crash in between
// resends them when the server is back, and never loses them.
package dmf

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// Config configures one link: a connection to one broker (virtual host).
type Config struct {
	// URL is the broker, e.g. amqp://guest:guest@127.0.0.1:5672/.
	URL string
	// Name names the link in the device records (default "default"); a
	// device is answered over the link it registered on.
	Name string
	// Tenant, if set, is the only tenant this link serves: give each
	// tenant its own virtual host and credentials, and a link per tenant
	// (the tenant header must then match). Empty: any tenant the message
	// names.
	Tenant string
	// Exchange and Queue receive the devices' messages (hawkBit's
	// dmf.exchange and dmf_receiver); DeadLetterExchange and
	// DeadLetterQueue take the messages that cannot be processed, with
	// the reason in the header x-flotilla-reason.
	Exchange, Queue                     string
	DeadLetterExchange, DeadLetterQueue string
	// Owner names this replica in outbox leases.
	Owner string
	// PublicURL is the base URL devices download artifacts from.
	PublicURL string
	// Prefetch bounds unacknowledged deliveries (default 256), Workers
	// the messages processed at once (default 64). A status waits for
	// its commit; the more wait at once, the more share one commit.
	Prefetch, Workers int
	// Poll is how often the outbox is read when nothing wakes the
	// publisher (default 1s).
	Poll time.Duration
	// Count, if set, counts messages: direction "in" or "out", the
	// message's type or topic, and what became of it (processed,
	// deadlettered, requeued; sent). The server counts into its metrics
	// and then calls a Count its embedder set.
	Count func(link, direction, kind, outcome string)
}

// Store is what the link reads and writes besides the core.
type Store interface {
	store.DMF
	GetDevice(ctx context.Context, tenant, id string) (flotilla.Device, error)
	GetDeployment(ctx context.Context, tenant string, id int64) (flotilla.Deployment, error)
	DeviceActions(ctx context.Context, tenant, deviceID string) (open []flotilla.Deployment, installed *flotilla.Deployment, err error)
}

// Link is one DMF connection: it consumes the devices' messages and
// publishes the outbox of the devices registered on it.
type Link struct {
	core *core.Core
	st   Store
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	connected atomic.Bool
	lastErr   atomic.Pointer[string]

	sendMu sync.Mutex // one message out at a time
	mu     sync.Mutex
	conn   *amqp.Connection // nil when down
	pub    *amqp.Channel    // publishing channel, confirm mode
	ret    chan amqp.Return
}

// New returns a link; Run connects it.
func New(c *core.Core, st Store, cfg Config, log *slog.Logger) *Link {
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	if cfg.Exchange == "" {
		cfg.Exchange = "dmf.exchange"
	}
	if cfg.Queue == "" {
		cfg.Queue = "dmf_receiver"
	}
	// hawkBit's names for the default queue; derived ones otherwise, so
	// that installations sharing a virtual host do not share them.
	if cfg.DeadLetterExchange == "" {
		cfg.DeadLetterExchange = "dmf.connector.deadletter"
		if cfg.Queue != "dmf_receiver" {
			cfg.DeadLetterExchange = cfg.Queue + ".deadletter"
		}
	}
	if cfg.DeadLetterQueue == "" {
		cfg.DeadLetterQueue = "dmf_connector_deadletter_ttl"
		if cfg.Queue != "dmf_receiver" {
			cfg.DeadLetterQueue = cfg.Queue + "_deadletter"
		}
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 256
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Link{core: c, st: st, cfg: cfg, log: log.With("dmf", cfg.Name), wake: make(chan struct{}, 1)}
}

// Wake nudges the publisher: the outbox may have grown.
func (l *Link) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Link) count(direction, kind, outcome string) {
	if l.cfg.Count != nil {
		l.cfg.Count(l.cfg.Name, direction, kind, outcome)
	}
}

// Name is the link's name in device records.
func (l *Link) Name() string { return l.cfg.Name }

// DefaultPublicURL sets the base of download links when none was
// configured; call it before Run.
func (l *Link) DefaultPublicURL(u string) {
	if l.cfg.PublicURL == "" {
		l.cfg.PublicURL = u
	}
}

// Ready reports whether the broker is connected, for /readyz.
func (l *Link) Ready() error {
	if l.connected.Load() {
		return nil
	}
	msg := "not connected yet"
	if p := l.lastErr.Load(); p != nil {
		msg = *p
	}
	return fmt.Errorf("DMF broker %s: %s", l.cfg.Name, msg)
}

// Run keeps the link connected until ctx ends, reconnecting with back-off
// when the broker goes away.
func (l *Link) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.publishLoop(ctx) }()
	go func() { defer wg.Done(); l.windowLoop(ctx) }()
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := l.session(ctx)
		l.connected.Store(false)
		l.mu.Lock()
		l.conn, l.pub, l.ret = nil, nil, nil
		l.mu.Unlock()
		if ctx.Err() != nil {
			break
		}
		msg := err.Error()
		l.lastErr.Store(&msg)
		l.log.Warn("DMF broker connection lost; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff + rand.N(backoff/2)):
		}
		backoff = min(2*backoff, 30*time.Second)
		if l.connected.Load() {
			backoff = 500 * time.Millisecond
		}
	}
	wg.Wait()
}

// session is one connection: declare, consume until it breaks.
func (l *Link) session(ctx context.Context) error {
	conn, err := amqp.DialConfig(l.cfg.URL, amqp.Config{Heartbeat: 10 * time.Second, Properties: amqp.Table{"connection_name": "flotilla " + l.cfg.Owner}})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := l.declare(ch); err != nil {
		return err
	}
	if err := ch.Qos(l.cfg.Prefetch, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(l.cfg.Queue, "flotilla-"+l.cfg.Owner, false, false, false, false, nil)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.conn, l.pub = conn, nil
	l.mu.Unlock()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	// Messages are processed by several workers, each thing's by the
	// same one, so that one thing's messages keep their order while the
	// database commits many things' at once.
	workers := make([]chan amqp.Delivery, l.cfg.Workers)
	acks := newAcker(ch, l.cfg.Prefetch)
	ackerDone := make(chan struct{})
	go func() { defer close(ackerDone); acks.run() }()
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = make(chan amqp.Delivery, 4)
		wg.Add(1)
		go func(in <-chan amqp.Delivery) {
			defer wg.Done()
			for d := range in {
				l.handle(ctx, ch, acks, d)
			}
		}(workers[i])
	}
	defer func() {
		for _, w := range workers {
			close(w)
		}
		wg.Wait()
		close(acks.tags)
		<-ackerDone
	}()
	l.connected.Store(true)
	l.log.Info("DMF broker connected", "queue", l.cfg.Queue)
	l.Wake()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-closed:
			if !ok || e == nil {
				return errors.New("connection closed")
			}
			return e
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("the consumer was cancelled")
			}
			h := fnv.New32a()
			h.Write([]byte(header(d, "tenant") + "/" + header(d, "thingId")))
			workers[h.Sum32()%uint32(len(workers))] <- d
		}
	}
}

// declare makes what hawkBit declares: the receiving exchange bound to the
// server's queue, and a dead-letter exchange and queue for messages that
// cannot be processed.
func (l *Link) declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(l.cfg.DeadLetterExchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", l.cfg.DeadLetterExchange, err)
	}
	if _, err := ch.QueueDeclare(l.cfg.DeadLetterQueue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", l.cfg.DeadLetterQueue, err)
	}
	if err := ch.QueueBind(l.cfg.DeadLetterQueue, "", l.cfg.DeadLetterExchange, false, nil); err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(l.cfg.Exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", l.cfg.Exchange, err)
	}
	if _, err := ch.QueueDeclare(l.cfg.Queue, true, false, false, false, amqp.Table{"x-dead-letter-exchange": l.cfg.DeadLetterExchange}); err != nil {
		return fmt.Errorf("declare %s: %w", l.cfg.Queue, err)
	}
	return ch.QueueBind(l.cfg.Queue, "", l.cfg.Exchange, false, nil)
}

// publisher returns the confirm-mode channel messages go out on, opening
// it when needed: the broker closes it when a message names an exchange
// that does not exist.
func (l *Link) publisher() (*amqp.Channel, chan amqp.Return, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.conn.IsClosed() {
		return nil, nil, errors.New("not connected to the broker")
	}
	if l.pub != nil && !l.pub.IsClosed() {
		return l.pub, l.ret, nil
	}
	ch, err := l.conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, nil, err
	}
	l.pub, l.ret = ch, ch.NotifyReturn(make(chan amqp.Return, 1))
	return l.pub, l.ret, nil
}
