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
	URL       string
	t         testing.TB
	dir       string
	port, dst int
	cmd       *exec.Cmd
}

const rabbitServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// StartBroker starts a private RabbitMQ node on free loopback ports, with
// its data under a temporary directory, and stops it when the test ends.
// It skips when RabbitMQ is not installed.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	if _, err := os.Stat(rabbitServer); err != nil {
		Missing(t, "RabbitMQ is not installed (%s): apt-get install rabbitmq-server", rabbitServer)
	}
	if _, err := exec.LookPath("erl"); err != nil {
		Missing(t, "RabbitMQ's Erlang runtime (erl) is not on PATH: apt-get install rabbitmq-server")
	}
	b := &Broker{t: t, dir: t.TempDir(), port: freePort(t), dst: freePort(t)}
	b.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", b.port)
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start starts the node (again, on the same data) and waits until it
// accepts connections.
func (b *Broker) Start() {
	b.t.Helper()
	name := fmt.Sprintf("flotilla%d@localhost", b.port)
	cmd := exec.Command(rabbitServer)
	cmd.Env = append(os.Environ(), "HOME="+b.dir, "RABBITMQ_NODENAME="+name,
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", b.port), fmt.Sprintf("RABBITMQ_DIST_PORT=%d", b.dst),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_MNESIA_BASE="+filepath.Join(b.dir, "mnesia"), "RABBITMQ_LOG_BASE="+filepath.Join(b.dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.dir, "plugins"), "RABBITMQ_CONFIG_FILE="+filepath.Join(b.dir, "none"),
		"RABBITMQ_PID_FILE="+filepath.Join(b.dir, "pid"))
	log, err := os.OpenFile(filepath.Join(b.dir, "broker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start RabbitMQ: %v", err)
	}
	b.cmd = cmd
	deadline := time.Now().Add(90 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(b.dir, "broker.log"))
			b.t.Fatalf("the private RabbitMQ did not start in 90s:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop shuts the node down as an operator would (SIGTERM) and waits.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-done
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
