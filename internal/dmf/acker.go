package dmf

import amqp "github.com/rabbitmq/amqp091-go"

// acker acknowledges what the workers settled, in delivery order and many
// at once: one frame for a run of messages instead of one each, which
// matters when statuses arrive by the thousand.
type acker struct {
	ch   *amqp.Channel
	tags chan settled
}

// settled is a delivery a worker is done with; ack false when it was
// settled otherwise (rejected or requeued).
type settled struct {
	tag uint64
	ack bool
}

func newAcker(ch *amqp.Channel, capacity int) *acker {
	return &acker{ch: ch, tags: make(chan settled, capacity)}
}

// run acknowledges until tags is closed. Delivery tags on a channel count
// up from 1.
func (a *acker) run() {
	next := uint64(1)
	done := map[uint64]bool{} // settled, true when it is to be acked
	for s := range a.tags {
		done[s.tag] = s.ack
		// Take whatever else is ready before writing a frame.
		for more := true; more; {
			select {
			case s, ok := <-a.tags:
				if !ok {
					more = false
					break
				}
				done[s.tag] = s.ack
			default:
				more = false
			}
		}
		upTo, ack := uint64(0), false
		for {
			v, ok := done[next]
			if !ok {
				break
			}
			delete(done, next)
			if v {
				ack = true
			}
			upTo = next
			next++
		}
		if ack {
			// Multiple: every delivery up to upTo not yet settled, i.e.
			// the acked ones of the run.
			a.ch.Ack(upTo, true)
		}
	}
}
