package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/middleware"
)

// DefaultThresholds returns the percentages of a budget's limit that fire
// an alert when Config.Thresholds is empty: 50, 80 and 100.
func DefaultThresholds() []int { return []int{50, 80, 100} }

// SignatureHeader carries a webhook's signature: "t=UNIX,v1=HEX", HEX
// being the HMAC-SHA256, keyed with the secret, of "UNIX." followed by the
// body. [Verify] checks it.
const SignatureHeader = "X-Gatekit-Signature"

// Defaults of [Config].
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
	DefaultTimeout    = 10 * time.Second
)

// Config configures a [Notifier].
type Config struct {
	// Balance reads a budget's state, typically an admission.Store's
	// Balance. Required.
	Balance func(ctx context.Context, s budget.Scope) (budget.Balance, error)
	// Ledger keeps which alerts fired and which are pending. Default: a
	// Memory (alerts fire once per process only).
	Ledger Ledger
	// Thresholds are the percentages of a budget's limit that fire an
	// alert, each once per scope and period. Default: DefaultThresholds().
	Thresholds []int
	// ThresholdsFor, when set, gives a budget's own thresholds; an empty
	// answer takes Thresholds.
	ThresholdsFor func(s budget.Scope) []int
	// OnAlert, when set, is called with every alert as it fires; it must
	// not block.
	OnAlert func(ctx context.Context, a Alert)
	// WebhookURL, when set, receives every alert as a JSON POST, retried
	// with backoff until it answers 2xx.
	WebhookURL string
	// Secret keys the webhook's signature. Required with WebhookURL.
	Secret string
	// Client sends the webhooks. Default: a client with DefaultTimeout.
	Client *http.Client
	// MinBackoff and MaxBackoff bound the wait between attempts, doubling
	// from the first to the second. Defaults: DefaultMinBackoff,
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock of alerts' times and signatures. Default: time.Now.
	Now func() time.Time
	// Metrics, when set, receives gatekit_budget_alerts_total by result
	// (fired, sent, failed).
	Metrics prometheus.Registerer
	// Logger receives failed deliveries. Default: slog.Default().
	Logger *slog.Logger
}

// Notifier watches settlements and fires budget alerts. Its methods are
// safe for concurrent use.
type Notifier struct {
	cfg     Config
	checks  chan []budget.Scope
	wake    chan struct{}
	counter *prometheus.CounterVec
	stop    context.CancelFunc
	done    chan struct{}
}

// New starts a Notifier: it delivers what the ledger holds as pending (a
// restart's leftovers) and then each alert as it fires, until Close.
func New(cfg Config) (*Notifier, error) {
	if cfg.Balance == nil {
		return nil, errors.New("alerts: Balance is required")
	}
	if cfg.WebhookURL != "" && cfg.Secret == "" {
		return nil, errors.New("alerts: a webhook needs a Secret to sign with")
	}
	if cfg.Ledger == nil {
		cfg.Ledger = NewMemory()
	}
	if len(cfg.Thresholds) == 0 {
		cfg.Thresholds = DefaultThresholds()
	}
	for _, t := range cfg.Thresholds {
		if t <= 0 || t > 1000 {
			return nil, fmt.Errorf("alerts: threshold %d%%: want 1 to 1000", t)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Notifier{cfg: cfg, checks: make(chan []budget.Scope, 1024), wake: make(chan struct{}, 1), done: make(chan struct{})}
	if cfg.Metrics != nil {
		n.counter = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekit_budget_alerts_total",
			Help: "Budget alerts by result: fired, sent (a webhook delivered), failed (a webhook attempt that failed).",
		}, []string{"result"})
		if err := cfg.Metrics.Register(n.counter); err != nil {
			return nil, fmt.Errorf("alerts: metrics: %w", err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	n.stop = stop
	go n.run(ctx)
	n.poke()
	return n, nil
}

// Close stops the Notifier; alerts still pending stay in the ledger for
// the next start.
func (n *Notifier) Close() error {
	n.stop()
	<-n.done
	return nil
}

// Observe checks the budgets a settlement charged: pass it as
// gatekit.Config.OnSettle. It does not block; the check runs in the
// background.
func (n *Notifier) Observe(_ context.Context, s middleware.Settlement) {
	if s.Charged <= 0 || s.Principal == nil || len(s.Principal.Budgets) == 0 {
		return
	}
	select {
	case n.checks <- s.Principal.Budgets:
	default: // a burst: later settlements check the same budgets again
	}
}

// Check fires the alerts the scopes' balances call for, and returns them.
func (n *Notifier) Check(ctx context.Context, scopes []budget.Scope) ([]Alert, error) {
	var fired []Alert
	for _, s := range scopes {
		if s.Limit <= 0 {
			continue
		}
		b, err := n.cfg.Balance(ctx, s)
		if err != nil {
			return fired, fmt.Errorf("alerts: reading %s: %w", s, err)
		}
		thresholds := n.cfg.Thresholds
		if n.cfg.ThresholdsFor != nil {
			if own := n.cfg.ThresholdsFor(s); len(own) > 0 {
				thresholds = own
			}
		}
		for _, t := range thresholds {
			if t <= 0 {
				continue
			}
			// spent/limit >= t/100, in integers.
			if int64(b.Spent)*100 < int64(b.Limit)*int64(t) {
				continue
			}
			a := Alert{ID: alertID(s.Kind, s.ID, s.Tag, b.ResetsAt, t), Scope: s.Kind, ScopeID: s.ID, Account: s.Tag,
				Period: s.Period.String(), Limit: usd(b.Limit), Spent: usd(b.Spent), Threshold: t, Time: n.cfg.Now().UTC()}
			if !b.ResetsAt.IsZero() {
				end := b.ResetsAt.UTC()
				a.PeriodEnd = &end
			}
			ok, err := n.cfg.Ledger.Claim(ctx, a)
			if err != nil {
				return fired, err
			}
			if !ok {
				continue
			}
			fired = append(fired, a)
			n.count("fired")
			if n.cfg.OnAlert != nil {
				n.cfg.OnAlert(ctx, a)
			}
			if n.cfg.WebhookURL == "" {
				if err := n.cfg.Ledger.Delivered(ctx, a.ID); err != nil {
					return fired, err
				}
			}
		}
	}
	if len(fired) > 0 && n.cfg.WebhookURL != "" {
		n.poke()
	}
	return fired, nil
}

func (n *Notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Notifier) count(result string) {
	if n.counter != nil {
		n.counter.WithLabelValues(result).Inc()
	}
}

// run checks budgets and delivers pending alerts until ctx ends.
func (n *Notifier) run(ctx context.Context) {
	defer close(n.done)
	backoff := time.Duration(0)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case scopes := <-n.checks:
			if _, err := n.Check(ctx, scopes); err != nil && ctx.Err() == nil {
				n.cfg.Logger.Warn("alerts: checking budgets", "error", err.Error())
			}
			continue
		case <-n.wake:
		case <-retry:
		}
		retry = nil
		if n.cfg.WebhookURL == "" {
			continue
		}
		if n.deliverPending(ctx) {
			backoff = 0
			continue
		}
		if backoff == 0 {
			backoff = n.cfg.MinBackoff
		} else {
			backoff = min(2*backoff, n.cfg.MaxBackoff)
		}
		retry = time.After(backoff)
	}
}

// deliverPending sends every pending alert; it reports whether all went.
func (n *Notifier) deliverPending(ctx context.Context) bool {
	pending, err := n.cfg.Ledger.Pending(ctx)
	if err != nil {
		n.cfg.Logger.Warn("alerts: reading pending alerts", "error", err.Error())
		return false
	}
	for _, a := range pending {
		if err := n.send(ctx, a); err != nil {
			n.count("failed")
			if ctx.Err() == nil {
				n.cfg.Logger.Warn("alerts: webhook failed; retrying with backoff", "alert", a.ID, "error", err.Error())
			}
			return false
		}
		n.count("sent")
		if err := n.cfg.Ledger.Delivered(ctx, a.ID); err != nil {
			n.cfg.Logger.Warn("alerts: marking an alert delivered", "alert", a.ID, "error", err.Error())
			return false
		}
	}
	return true
}

// send posts one alert, signed.
func (n *Notifier) send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gatekit-Alert-Id", a.ID)
	req.Header.Set(SignatureHeader, Sign(n.cfg.Secret, n.cfg.Now(), body))
	res, err := n.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", res.Status)
	}
	return nil
}

// Sign returns the SignatureHeader value of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is a valid signature of body, made at
// most tolerance before now: for webhook receivers.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(mac(secret, ts, body)))
}

// usd writes an amount without its unit.
func usd(m budget.Micros) string { return strings.TrimSuffix(m.String(), " USD") }
