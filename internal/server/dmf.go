package server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/flotilla-ota/flotilla/internal/dmf"
)

// ParseAMQP reads --amqp-url values: "amqp://user:pass@host:5672/vhost"
// serves every tenant the messages name; "TENANT=amqp://..." serves one
// tenant, on its own virtual host and credentials. The query parameters
// queue, exchange, deadletter_queue and deadletter_exchange rename what is
// declared (default hawkBit's: dmf_receiver, dmf.exchange,
// dmf_connector_deadletter_ttl, dmf.connector.deadletter).
func ParseAMQP(values []string) ([]dmf.Config, error) {
	var out []dmf.Config
	seen := map[string]bool{}
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		var c dmf.Config
		if i := strings.Index(v, "="); i > 0 && !strings.Contains(v[:i], "://") {
			c.Tenant, v = strings.ToLower(v[:i]), v[i+1:]
			c.Name = c.Tenant
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
			return nil, fmt.Errorf("AMQP URL %q: use amqp://USER:PASSWORD@HOST:5672/VHOST, or TENANT=amqp://... for a tenant's own virtual host", redactURL(v))
		}
		// The queue and exchange names may be chosen (several
		// installations on one virtual host); the broker does not see
		// these parameters.
		q := u.Query()
		c.Queue, c.Exchange = q.Get("queue"), q.Get("exchange")
		c.DeadLetterQueue, c.DeadLetterExchange = q.Get("deadletter_queue"), q.Get("deadletter_exchange")
		for _, k := range []string{"queue", "exchange", "deadletter_queue", "deadletter_exchange"} {
			q.Del(k)
		}
		u.RawQuery = q.Encode()
		c.URL = u.String()
		if c.Name == "" {
			c.Name = "default"
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("AMQP URL for %q given twice", c.Name)
		}
		seen[c.Name] = true
		out = append(out, c)
	}
	return out, nil
}

// newDMF makes the DMF links the configuration names.
func (s *Server) newDMF() {
	for _, c := range s.Config.DMF {
		c.Owner = s.Sched.Owner()
		c.PublicURL = strings.TrimSuffix(s.Config.PublicURL, "/")
		count := s.metrics.countDMF
		if theirs := c.Count; theirs != nil {
			// A program embedding the server (the bench) counts too.
			count = func(link, direction, kind, outcome string) {
				s.metrics.countDMF(link, direction, kind, outcome)
				theirs(link, direction, kind, outcome)
			}
		}
		c.Count = count
		s.DMF = append(s.DMF, dmf.New(s.Core, s.Store, c, s.Log))
	}
}

// wakeDMF tells the links the outbox may have grown.
func (s *Server) wakeDMF() {
	for _, l := range s.DMF {
		l.Wake()
	}
}

// runDMF starts the links; devices download from addr unless a public
// URL was configured.
func (s *Server) runDMF(ctx context.Context, addr net.Addr, start func(func())) {
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	for _, l := range s.DMF {
		l.DefaultPublicURL(scheme + "://" + addr.String())
		start(func() { l.Run(ctx) })
	}
}
