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
// flood of keys cannot blow up the series count, and failed
// authentications by reason. Create one per registry
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
	authFailures *prometheus.CounterVec

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

// The outcomes of a decision, as indexes of outcomeNames, the values of
// the "outcome" label.
const (
	outcomeAllowed = iota
	outcomeDenied
	outcomeError
)

var outcomeNames = [3]string{"allowed", "denied", "error"}

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
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: c.Namespace, Subsystem: "auth", Name: "failures_total",
			Help: "Failed authentications by reason (missing_key, malformed_header, unknown_key, store_error); never by key.",
		}, []string{"reason"}),
		maxPrincipals: c.MaxPrincipals,
		principals:    map[string]struct{}{},
	}
	for _, col := range []prometheus.Collector{m.decisions, m.denied, m.storeErrors, m.storeLatency, m.tokensUsed,
		m.spent, m.holdsOpen, m.refused, m.ledgerErrors, m.authFailures} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// principalLabel returns the value of the "principal" label for id: id
// itself for the first maxPrincipals ids seen, "other" after them.
func (m *Metrics) principalLabel(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.principals[id]; !ok {
		if len(m.principals) >= m.maxPrincipals {
			return "other"
		}
		m.principals[id] = struct{}{}
	}
	return id
}

func (m *Metrics) observeStore(d time.Duration, err error) {
	m.storeLatency.Observe(d.Seconds())
	if err != nil {
		m.storeErrors.Inc()
	}
}

// entryCounters are a route entry's series of the rate-limit metrics,
// looked up once and kept on the entry, so that counting a decision is an
// increment, not a look-up by labels. It is immutable: a series added
// publishes a copy.
type entryCounters struct {
	decisions [2][3]prometheus.Counter // by limit and outcome
	denied    prometheus.Counter       // the principal's denials
	tokens    prometheus.Counter
}

// count counts a decision on the entry's limit.
func (e *routeEntry) count(m *Metrics, limit, outcome int) {
	if c := e.counters.Load(); c != nil && c.decisions[limit][outcome] != nil {
		c.decisions[limit][outcome].Inc()
		return
	}
	c := m.decisions.WithLabelValues(e.method, e.route, limitNames[limit], outcomeNames[outcome])
	e.addCounters(func(ec *entryCounters) { ec.decisions[limit][outcome] = c })
	c.Inc()
}

// countDenied counts a denial of the entry's principal p.
func (e *routeEntry) countDenied(m *Metrics, p *Principal) {
	if c := e.counters.Load(); c != nil && c.denied != nil {
		c.denied.Inc()
		return
	}
	c := m.denied.WithLabelValues(m.principalLabel(p.ID))
	e.addCounters(func(ec *entryCounters) { ec.denied = c })
	c.Inc()
}

// metrics returns the entry's counters with its tokens series in place.
func (e *routeEntry) metrics(m *Metrics) *entryCounters {
	if c := e.counters.Load(); c != nil && c.tokens != nil {
		return c
	}
	c := m.tokensUsed.WithLabelValues(e.method, e.route)
	return e.addCounters(func(ec *entryCounters) { ec.tokens = c })
}

// addCounters publishes a copy of the entry's counters changed by set.
func (e *routeEntry) addCounters(set func(*entryCounters)) *entryCounters {
	for {
		old := e.counters.Load()
		next := &entryCounters{}
		if old != nil {
			*next = *old
		}
		set(next)
		if e.counters.CompareAndSwap(old, next) {
			return next
		}
	}
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

// authFailed counts a failed authentication; a nil m counts nothing.
func (m *Metrics) authFailed(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}
