package testtool

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQ returns the URL of the RabbitMQ the DMF tests use
// (FLOTILLA_TEST_AMQP, default amqp://guest:guest@127.0.0.1:5672/), or
// skips when it does not answer.
func RabbitMQ(t testing.TB) string {
	t.Helper()
	url := os.Getenv("FLOTILLA_TEST_AMQP")
	addr := "127.0.0.1:5672"
	if url == "" {
		url = "amqp://guest:guest@" + addr + "/"
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil && os.Getenv("FLOTILLA_TEST_AMQP") == "" {
		Missing(t, "RabbitMQ does not answer on %s (%v): install and start it (apt-get install rabbitmq-server && rabbitmq-server -detached) or set FLOTILLA_TEST_AMQP", addr, err)
	} else if err == nil {
		c.Close()
	}
	return url
}

// Broker is a private RabbitMQ node a test may stop and start: a restart
// of the shared one would disturb the tests running beside it.
type Broker struct {
	URL  string
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

const rabbitServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// StartBroker starts a private RabbitMQ node on free loopback ports, with
// its data under a temporary directory, and stops it when the test ends.
// It skips when RabbitMQ is not installed. When the test fails, the
// node's log goes into the test's output.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	if _, err := os.Stat(rabbitServer); err != nil {
		Missing(t, "RabbitMQ is not installed (%s): apt-get install rabbitmq-server", rabbitServer)
	}
	if _, err := exec.LookPath("erl"); err != nil {
		Missing(t, "RabbitMQ's Erlang runtime (erl) is not on PATH: apt-get install rabbitmq-server")
	}
	b := &Broker{t: t, dir: t.TempDir()}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("the private RabbitMQ's log:\n%s", b.logTail(8000))
		}
	})
	// A port another program took between the check and the node's bind
	// fails the start; a second try on other ports is not a retry of a bug.
	for try := 1; ; try++ {
		b.port = ListenPort(t)
		b.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", b.port)
		err := b.start()
		if err == nil {
			return b
		}
		if try == 3 {
			t.Fatalf("the private RabbitMQ did not start: %v", err)
		}
		t.Logf("the private RabbitMQ did not start (%v): trying other ports", err)
	}
}

// logTail is the last n bytes of the node's log.
func (b *Broker) logTail(n int) []byte {
	out, _ := os.ReadFile(filepath.Join(b.dir, "broker.log"))
	if len(out) > n {
		return out[len(out)-n:]
	}
	return out
}

// Start starts the node again, on the same data and AMQP port, and waits
// until it accepts AMQP connections.
func (b *Broker) Start() {
	b.t.Helper()
	if err := b.start(); err != nil {
		b.t.Fatalf("restart the private RabbitMQ: %v", err)
	}
}

func (b *Broker) start() error {
	// The distribution port is the node's own business: a fresh one each
	// start, so a restart does not wait for the last one to be released.
	name := fmt.Sprintf("flotilla%d@localhost", b.port)
	cmd := exec.Command(rabbitServer)
	cmd.Env = append(os.Environ(), "HOME="+b.dir, "RABBITMQ_NODENAME="+name,
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", b.port), fmt.Sprintf("RABBITMQ_DIST_PORT=%d", ListenPort(b.t)),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_MNESIA_BASE="+filepath.Join(b.dir, "mnesia"), "RABBITMQ_LOG_BASE="+filepath.Join(b.dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.dir, "plugins"), "RABBITMQ_CONFIG_FILE="+filepath.Join(b.dir, "none"),
		"RABBITMQ_PID_FILE="+filepath.Join(b.dir, "pid"), "ERL_CRASH_DUMP="+filepath.Join(b.dir, "erl_crash.dump"))
	log, err := os.OpenFile(filepath.Join(b.dir, "broker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "--- %s: starting %s on AMQP port %d\n", time.Now().Format(time.RFC3339), name, b.port)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", rabbitServer, err)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(b.done)
	// Ready means an AMQP handshake, not an open port: a port that accepts
	// may still belong to a node on its way down, or to a dial that met
	// itself.
	deadline := time.Now().Add(120 * time.Second)
	for {
		if c, err := amqp.Dial(b.URL); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-b.done:
			b.cmd = nil
			return fmt.Errorf("the node exited while starting: %s:\n%s", cmd.ProcessState, b.logTail(4000))
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Stop()
			return fmt.Errorf("no AMQP handshake in 120s:\n%s", b.logTail(4000))
		}
	}
}

// Stop shuts the node down as an operator would (SIGTERM) and waits.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
	b.cmd = nil
}

// AMQPNames are one test's queue and exchanges on a shared broker, so that
// tests running side by side do not read each other's messages: the
// server's exchange and queue (and its dead-letter queue), and a
// gateway's reply exchange (its queue is Reply + ".queue").
type AMQPNames struct{ Exchange, Queue, DeadLetter, Reply string }

// NewAMQPNames makes fresh names and deletes what was declared under them
// when the test ends.
func NewAMQPNames(t testing.TB, url, prefix string) AMQPNames {
	id := fmt.Sprintf("%x", rand.Uint64())
	n := AMQPNames{Exchange: prefix + "." + id + ".exchange", Queue: prefix + "-" + id, DeadLetter: prefix + "-" + id + "_deadletter", Reply: prefix + "-gw-" + id}
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		for _, q := range []string{n.Queue, n.DeadLetter, n.Reply + ".queue"} {
			ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{n.Exchange, n.Queue + ".deadletter", n.Reply} {
			ch.ExchangeDelete(x, false, false)
		}
	})
	return n
}
