package middleware

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit/budget"
)

// Metrics counts what gatekit's middleware decides, for Prometheus. Labels
// are route patterns, limit kinds and outcomes, and principal ids (never
// keys) for denials, with the number of distinct principals capped so a
// flood of keys cannot blow up the series count. Create one per registry
// with [NewMetrics]; it is safe for concurrent use.
type Metrics struct {
	decisions    *prometheus.CounterVec
	denied       *prometheus.CounterVec
	storeErrors  prometheus.Counter
	storeLatency prometheus.Histogram
	tokensUsed   *prometheus.CounterVec
	spent        *prometheus.CounterVec
	holdsOpen    prometheus.Gauge
	refused      *prometheus.CounterVec
	ledgerErrors prometheus.Counter

	maxPrincipals int
	mu            sync.Mutex
	principals    map[string]struct{}
}

// MetricsConfig configures [NewMetrics].
type MetricsConfig struct {
	// Namespace prefixes every metric name. Default: "gatekit".
	Namespace string
	// MaxPrincipals caps the distinct principal ids used as label values;
	// further principals are counted as "other". Default: 1000.
	MaxPrincipals int
}

// The outcomes of a decision, as the "outcome" label carries them.
const (
	outcomeAllowed = "allowed"
	outcomeDenied  = "denied"
	outcomeError   = "error"
)

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
	if c.MaxPrincipals <= 0 {
		c.MaxPrincipals = 1000
	}
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "ratelimit", Name: "decisions_total",
			Help: "Rate-limit decisions by method, route, limit (requests or tokens) and outcome (allowed, denied, error).",
		}, []string{"method", "route", "limit", "outcome"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "ratelimit", Name: "denied_by_principal_total",
			Help: "Rate-limit denials by principal id (capped; the rest count as \"other\").",
		}, []string{"principal"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "ratelimit", Name: "store_errors_total",
			Help: "Rate-limit store calls that failed or timed out.",
		}),
		storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: c.Namespace, Subsystem: "ratelimit", Name: "store_latency_seconds",
			Help:    "Latency of rate-limit store calls.",
			Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		tokensUsed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "ratelimit", Name: "tokens_charged_total",
			Help: "Tokens charged to token limits, by method and route.",
		}, []string{"method", "route"}),
		spent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "budget", Name: "spent_micros_total",
			Help: "Settled spend in micro-USD, by scope kind (key, account).",
		}, []string{"scope"}),
		holdsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: c.Namespace, Subsystem: "budget", Name: "holds_open",
			Help: "Budget holds taken by this process and not yet settled or released.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "budget", Name: "exceeded_total",
			Help: "Requests answered 402 budget_exceeded, by the kind of scope that ran out.",
		}, []string{"scope"}),
		ledgerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "budget", Name: "ledger_errors_total",
			Help: "Budget ledger calls that failed or timed out.",
		}),
		maxPrincipals: c.MaxPrincipals,
		principals:    map[string]struct{}{},
	}
	for _, col := range []prometheus.Collector{m.decisions, m.denied, m.storeErrors, m.storeLatency, m.tokensUsed,
		m.spent, m.holdsOpen, m.refused, m.ledgerErrors} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) decision(method, route, limit, outcome string) {
	m.decisions.WithLabelValues(method, route, limit, outcome).Inc()
}

func (m *Metrics) deniedPrincipal(id string) {
	m.mu.Lock()
	if _, ok := m.principals[id]; !ok {
		if len(m.principals) >= m.maxPrincipals {
			id = "other"
		} else {
			m.principals[id] = struct{}{}
		}
	}
	m.mu.Unlock()
	m.denied.WithLabelValues(id).Inc()
}

func (m *Metrics) observeStore(d time.Duration, err error) {
	m.storeLatency.Observe(d.Seconds())
	if err != nil {
		m.storeErrors.Inc()
	}
}

func (m *Metrics) tokens(method, route string, n int64) {
	m.tokensUsed.WithLabelValues(method, route).Add(float64(n))
}

func (m *Metrics) holdOpened()               { m.holdsOpen.Inc() }
func (m *Metrics) holdClosed()               { m.holdsOpen.Dec() }
func (m *Metrics) budgetError()              { m.ledgerErrors.Inc() }
func (m *Metrics) budgetRefused(kind string) { m.refused.WithLabelValues(kind).Inc() }
func (m *Metrics) spend(scopes []budget.Scope, cost budget.Micros) {
	for _, s := range scopes {
		m.spent.WithLabelValues(s.Kind).Add(float64(cost))
	}
}
