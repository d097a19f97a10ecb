package server

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is a registry per server, so several servers in one test process
// do not collide.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	storeTime *prometheus.HistogramVec
	downloads *prometheus.CounterVec
	dmf       *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_http_requests_total", Help: "HTTP requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "flotilla_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
	}, []string{"route", "method"})
	m.storeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "flotilla_store_operation_duration_seconds", Help: "Store operation latency by operation.",
		Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
	}, []string{"op"})
	m.downloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_ddi_downloads_total", Help: "Artifact download requests from devices, by whether they asked for a byte range (a resumed download).",
	}, []string{"kind"})
	m.dmf = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_dmf_messages_total", Help: "DMF (AMQP) messages by link, direction (in, out), type or topic, and outcome (processed, deadlettered, requeued; sent).",
	}, []string{"link", "direction", "kind", "outcome"})
	m.reg.MustRegister(m.requests, m.latency, m.storeTime, m.downloads, m.dmf,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observeStore(op string, d time.Duration) {
	m.storeTime.WithLabelValues(op).Observe(d.Seconds())
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// ReadFrom keeps sendfile working for downloads: without it io.Copy would
// not see the connection's ReaderFrom through this wrapper.
func (s *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{s.ResponseWriter}, r)
}

// Unwrap lets http.ResponseController reach Flush and Hijack underneath.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument records counts and latencies by the pattern the mux matched,
// never by raw path, so label cardinality stays bounded.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
		m.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}

func (m *metrics) countDownload(ranged bool) {
	kind := "full"
	if ranged {
		kind = "range"
	}
	m.downloads.WithLabelValues(kind).Inc()
}

func (m *metrics) countDMF(link, direction, kind, outcome string) {
	m.dmf.WithLabelValues(link, direction, kind, outcome).Inc()
}
