package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dirsyncd/dirsyncd/directory"
)

// Metrics holds dirsyncd's Prometheus collectors. It implements
// scheduler.Metrics (ObserveRun).
type Metrics struct {
	Registry     *prometheus.Registry
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	runs         *prometheus.CounterVec
	runDuration  *prometheus.HistogramVec
}

// NewMetrics registers the collectors (and the Go and process collectors)
// in a fresh registry. Features register theirs in Metrics.Registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dirsyncd_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dirsyncd_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dirsyncd_runs_total", Help: "Job runs by job and final status.",
		}, []string{"job", "status"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dirsyncd_run_duration_seconds", Help: "Job run duration by job.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600},
		}, []string{"job"}),
	}
	m.Registry.MustRegister(m.httpRequests, m.httpDuration, m.runs, m.runDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRun records a finished run.
func (m *Metrics) ObserveRun(job string, status directory.RunStatus, d time.Duration) {
	m.runs.WithLabelValues(job, string(status)).Inc()
	m.runDuration.WithLabelValues(job).Observe(d.Seconds())
}
