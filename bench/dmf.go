package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flotilla-ota/flotilla/internal/dmf"
	"github.com/flotilla-ota/flotilla/internal/server"
)

// runDMF: DMF status updates processed per second against the same
// updates over DDI HTTP, same server, same run. Each of N DMF things and N
// DDI devices has an open deployment and reports M intermediate statuses
// (each one a history entry, committed); DDI is driven by 16 keep-alive
// connections, DMF by one publisher, and the DMF figure runs from the
// first publish to the last status committed.
func runDMF(ctx context.Context, o opts) ([]result, error) {
	broker := os.Getenv("FLOTILLA_TEST_AMQP")
	if broker == "" {
		broker = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp.Dial(broker)
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ at %s: %w (start it: rabbitmq-server -detached)", broker, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	// Quick runs use the full size too: fewer statuses are measured in
	// too short a window for the machine's noise.
	n, m := 500, 10
	id := fmt.Sprintf("%x", rand.Uint32())
	exchange, queue, reply := "flotilla-bench."+id, "flotilla-bench-"+id, "flotilla-bench-gw-"+id
	defer func() {
		ch.QueueDelete(queue, false, false, false)
		ch.QueueDelete(queue+"_deadletter", false, false, false)
		ch.QueueDelete(reply, false, false, false)
		ch.ExchangeDelete(exchange, false, false)
		ch.ExchangeDelete(queue+".deadletter", false, false)
		ch.ExchangeDelete(reply, false, false)
	}()
	// The things' exchange, so that the server's messages to them land.
	if err := ch.ExchangeDeclare(reply, "fanout", false, false, false, false, nil); err != nil {
		return nil, err
	}
	if _, err := ch.QueueDeclare(reply, false, false, false, false, nil); err != nil {
		return nil, err
	}
	if err := ch.QueueBind(reply, "", reply, false, nil); err != nil {
		return nil, err
	}
	// The statuses processed are counted where the server counts them:
	// reading its /metrics every few milliseconds instead cost the DMF
	// side a tenth of the machine.
	var processed, want atomic.Int64
	want.Store(math.MaxInt64)
	reached := make(chan struct{})
	var once sync.Once
	count := func(_, direction, kind, outcome string) {
		if direction == "in" && kind == "UPDATE_ACTION_STATUS" && outcome == "processed" && processed.Add(1) >= want.Load() {
			once.Do(func() { close(reached) })
		}
	}
	f, err := startFlotilla(o.tmp+"/dmf", func(c *server.Config) {
		c.DMF = []dmf.Config{{URL: broker, Exchange: exchange, Queue: queue, Count: count}}
		c.DDIRate = -1
		// Every report written at once on both sides: the row compares the
		// two protocols' paths to the same write, not how many steps a
		// hold window happens to catch (core's held feedback).
		c.FeedbackHold = -1
	})
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	for f.Srv.DMF[0].Ready() != nil {
		time.Sleep(50 * time.Millisecond)
	}
	st := f.Srv.Store
	if _, err := createDevices(ctx, st, 2*n, n, map[string]string{}); err != nil {
		return nil, err
	}
	// Devices n..2n-1 are things reached over DMF.
	for i := n; i < 2*n; i++ {
		if err := st.SetDeviceDMF(ctx, "default", deviceID(i), "default", reply); err != nil {
			return nil, err
		}
	}
	if err := f.upload("fw", "2.0.0", strings.NewReader("fw 2"), 4); err != nil {
		return nil, err
	}
	actions := make([]int64, 2*n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	sem := make(chan struct{}, 8)
	for i := range 2 * n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var d struct{ ID int64 }
			if err := f.api("POST", "/api/v1/devices/"+deviceID(i)+"/deployments", map[string]any{"artifact": map[string]string{"name": "fw", "version": "2.0.0"}}, &d); err != nil {
				errs <- err
			}
			actions[i] = d.ID
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // the outbox drains

	// DDI devices fetch their action first, as DMF devices were sent
	// theirs: both report on deployments their devices have.
	var fetches [][]byte
	for i := range n {
		fetches = append(fetches, getRequest(f.Addr, fmt.Sprintf("/default/controller/v1/%s/deploymentBase/%d", deviceID(i), actions[i]),
			"Authorization", "TargetToken "+deviceToken(i)))
	}
	if r := loadOnce(f.Addr, 16, fetches, 200); r.Errors > 0 {
		return nil, fmt.Errorf("DDI deploymentBase: %d errors, first %s", r.Errors, r.FirstError)
	}
	// DDI: m feedback requests per device.
	var reqs [][]byte
	for step := range m {
		for i := range n {
			body := fmt.Sprintf(`{"status":{"execution":"proceeding","result":{"finished":"none"},"details":["step %d"]}}`, step)
			reqs = append(reqs, postRequest(f.Addr, fmt.Sprintf("/default/controller/v1/%s/deploymentBase/%d/feedback", deviceID(i), actions[i]), body,
				"Authorization", "TargetToken "+deviceToken(i)))
		}
	}
	stop := func() {}
	ddi := loadOnce(f.Addr, 16, reqs, 200)
	if ddi.Errors > 0 {
		stop()
		return nil, fmt.Errorf("DDI feedback: %d errors, first %s", ddi.Errors, ddi.FirstError)
	}
	// DMF: the same over the broker.
	before := processed.Load()
	want.Store(before + int64(n*m))
	stop = o.profileWindow()
	start := time.Now()
	for step := range m {
		for i := n; i < 2*n; i++ {
			b, _ := json.Marshal(dmf.ActionStatus{ActionID: actions[i], ActionStatus: dmf.StatusRunning, Message: []string{fmt.Sprintf("step %d", step)}})
			err := ch.PublishWithContext(ctx, exchange, "", false, false, amqp.Publishing{
				Headers:     amqp.Table{"type": "EVENT", "topic": "UPDATE_ACTION_STATUS", "tenant": "default", "thingId": deviceID(i)},
				ContentType: "application/json", ReplyTo: reply, Body: b})
			if err != nil {
				stop()
				return nil, err
			}
		}
	}
	select {
	case <-reached:
	case <-time.After(5 * time.Minute):
		stop()
		return nil, fmt.Errorf("DMF: %d of %d statuses processed after 5 minutes", processed.Load()-before, n*m)
	}
	elapsed := time.Since(start)
	stop()
	dmfRate := float64(n*m) / elapsed.Seconds()
	ddiRate := float64(len(reqs)) / ddi.Elapsed.Seconds()
	o.logf("DDI: %d feedbacks in %s; DMF: %d statuses in %s", len(reqs), ddi.Elapsed.Round(time.Millisecond), n*m, elapsed.Round(time.Millisecond))
	ratio := dmfRate / ddiRate
	return []result{{Name: "DMF status updates processed",
		Figure: rate(dmfRate, "statuses/s"), Baseline: rate(ddiRate, "statuses/s") + " (DDI feedback, 16 conns)",
		Ratio: ratio, Target: "≥ 0.80", Pass: ratio >= 0.8}}, nil
}

// postRequest renders a keep-alive JSON POST.
func postRequest(host, path, body string, headers ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, host, len(body))
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}
