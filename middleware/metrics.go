package middleware

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit/budget"
)

// Metrics counts what gatekit's middleware decides, for Prometheus:
// admissions, refusals, settlements and failed authentications. Labels
// are route patterns, limit names, scope kinds and failure reasons, never
// keys or principals, so a flood of keys cannot blow up the series count. Create
// one per registry with [NewMetrics]; it is safe for concurrent use.
type Metrics struct {
	admitted     *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	storeErrors  prometheus.Counter
	storeLatency prometheus.Histogram
	tokens       *prometheus.CounterVec
	spent        *prometheus.CounterVec
	overruns     *prometheus.CounterVec
	excessTokens prometheus.Counter
	excessMicros prometheus.Counter
	authFailures *prometheus.CounterVec
}

// MetricsConfig configures [NewMetrics].
type MetricsConfig struct {
	// Namespace prefixes every metric name. Default: "gatekit".
	Namespace string
}

// NewMetrics creates gatekit's metrics and registers them on reg (for
// example prometheus.DefaultRegisterer, or a fresh prometheus.NewRegistry()
// in tests). A nil cfg takes the defaults.
func NewMetrics(reg prometheus.Registerer, cfg *MetricsConfig) (*Metrics, error) {
	c := MetricsConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Namespace == "" {
		c.Namespace = "gatekit"
	}
	const sub = "admission"
	m := &Metrics{
		admitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "admitted_total",
			Help: "Requests admitted, by method and route.",
		}, []string{"method", "route"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "refused_total",
			Help: "Requests refused, by method, route and the limit that refused (requests, tokens, concurrency, budget).",
		}, []string{"method", "route", "limit"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "store_errors_total",
			Help: "Admission store calls (reserve and settle) that failed or timed out.",
		}),
		storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "store_latency_seconds",
			Help:    "Latency of reservations, before the handler.",
			Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "tokens_charged_total",
			Help: "Tokens charged to token limits at settlement, by method and route.",
		}, []string{"method", "route"}),
		spent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "spent_micros_total",
			Help: "Settled spend in micro-USD, by scope kind (key, account).",
		}, []string{"scope"}),
		overruns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "overruns_total",
			Help: "Requests whose handler reported more than its reservation, by method and route: the excess is not charged.",
		}, []string{"method", "route"}),
		excessTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "excess_tokens_total",
			Help: "Tokens reported beyond reservations, never charged.",
		}),
		excessMicros: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: sub, Name: "excess_micros_total",
			Help: "Cost in micro-USD reported beyond reservations, never charged.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "auth", Name: "failures_total",
			Help: "Failed authentications by reason (missing_key, malformed_header, unknown_key, refused_key, store_error); never by key.",
		}, []string{"reason"}),
	}
	for _, col := range []prometheus.Collector{m.admitted, m.refusals, m.storeErrors, m.storeLatency, m.tokens,
		m.spent, m.overruns, m.excessTokens, m.excessMicros, m.authFailures} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observeStore(d time.Duration, err error) {
	m.storeLatency.Observe(d.Seconds())
	if err != nil {
		m.storeErrors.Inc()
	}
}

func (m *Metrics) storeFailed() { m.storeErrors.Inc() }

func (m *Metrics) admittedRequest(method, route string) {
	m.admitted.WithLabelValues(method, route).Inc()
}

func (m *Metrics) refused(method, route, limit string) {
	m.refusals.WithLabelValues(method, route, limit).Inc()
}

// settled counts what a settlement charged, and what it did not.
func (m *Metrics) settled(s Settlement, scopes []budget.Scope) {
	if s.ChargedTokens > 0 {
		m.tokens.WithLabelValues(s.Method, s.Route).Add(float64(s.ChargedTokens))
	}
	if s.Charged > 0 {
		for _, sc := range scopes {
			m.spent.WithLabelValues(sc.Kind).Add(float64(s.Charged))
		}
	}
	if s.ExcessTokens > 0 || s.Excess > 0 {
		m.overruns.WithLabelValues(s.Method, s.Route).Inc()
		m.excessTokens.Add(float64(s.ExcessTokens))
		m.excessMicros.Add(float64(s.Excess))
	}
}

// authFailed counts a failed authentication; a nil m counts nothing.
func (m *Metrics) authFailed(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}
