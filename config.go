package gatekit

import (
	"bytes"
	"context"
	stderrors "errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// DefaultBodyLimit is the body limit of routes that set none: 8 MiB.
const DefaultBodyLimit ByteSize = 8 << 20

// Config is everything Mount needs. The zero value is usable: OpenAI's
// envelope, an 8 MiB body limit everywhere, and slog.Default() for logs.
// The same structure loads from YAML with [LoadConfig].
type Config struct {
	// Shape is the error envelope's layout: openai (default), anthropic,
	// problem, flat or gateway. A route may choose its own
	// (RouteConfig.Shape).
	Shape apierrors.Shape `yaml:"shape"`
	// Catalog adjusts how catalog codes are answered.
	Catalog CatalogConfig `yaml:"catalog"`
	// BodyLimit caps request bodies on routes without a limit of their own.
	// Default: DefaultBodyLimit. A negative value means no limit.
	BodyLimit ByteSize `yaml:"body_limit"`
	// Routes holds per-route settings, keyed by "METHOD /path" with Echo's
	// route pattern ("POST /v1/chat/completions"), or by "/path" alone for
	// every method.
	Routes map[string]RouteConfig `yaml:"routes"`
	// Auth says which requests need an API key and where it is read.
	Auth AuthConfig `yaml:"auth"`
	// Keys are the API keys the service knows, with their principals.
	// Ignored when KeyStore is set.
	Keys []KeyConfig `yaml:"keys"`
	// Tiers hold the limits and models of each plan, by tier name.
	Tiers map[string]TierConfig `yaml:"tiers"`
	// Admission sets how reservations behave: what happens when the store
	// fails, how long an unsettled one holds, and the default output
	// allowance.
	Admission AdmissionOptions `yaml:"admission"`
	// Budgets sets which routes are billable, the accounts' budgets and
	// how the ledger behaves.
	Budgets BudgetsConfig `yaml:"budgets"`
	// Prices are what models cost, per million tokens.
	Prices PricesConfig `yaml:"prices"`
	// Idempotency sets which routes honour Idempotency-Key.
	Idempotency IdempotencyConfig `yaml:"idempotency"`
	// Data keeps budgets and idempotent responses on disk, for a single
	// instance that must not lose them on restart.
	Data DataConfig `yaml:"data"`
	// RuntimeKeys keeps keys that change at runtime, for an admin API.
	RuntimeKeys RuntimeKeysConfig `yaml:"runtime_keys"`

	// Logger receives 5xx causes and panics. Default: slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// KeyStore resolves API keys; it replaces Keys, for services that keep
	// keys in a database.
	KeyStore middleware.KeyStore `yaml:"-"`
	// Store keeps every limit and budget: rate limits, concurrency and
	// spend. Default: an admission.Memory (keeping spend on disk with
	// Data.Dir); use an admission/redisstore.Store when several instances
	// share them.
	Store admission.Store `yaml:"-"`
	// Metrics, when set, receives gatekit's Prometheus metrics.
	Metrics prometheus.Registerer `yaml:"-"`
	// OnSettle, when set, receives every settled request's usage and
	// cost, for a billing database.
	OnSettle func(ctx context.Context, s middleware.Settlement) `yaml:"-"`
	// CountTokens counts a prompt's tokens for reservations; it must not
	// undercount. Default: one token per byte.
	CountTokens func(input []byte) int64 `yaml:"-"`
	// IdempotencyStore keeps idempotent responses. By default they are
	// kept by the admission store when it can (an admission.OnceStore,
	// such as admission/redisstore's): an idempotent request's key is then
	// claimed by its reservation and ended by its settlement, with no
	// store call of its own, and every instance sharing the store shares
	// the keys. Otherwise (the in-process stores) the default is
	// Data.Dir's durable store, or an idempotency.Memory.
	IdempotencyStore idempotency.Store `yaml:"-"`
}

// DataConfig is the durable-storage part of [Config].
type DataConfig struct {
	// Dir, when set, is where budgets and idempotent responses are kept
	// (in Dir/gatekit.db) across restarts; unset, they live in memory
	// only. Ignored for a Store or IdempotencyStore set in Go.
	Dir string `yaml:"dir"`
	// FlushInterval is how often settled spend and kept responses are
	// written: a crash loses at most this much. Default: 100ms; "-1ns"
	// or any negative duration writes every settlement before answering.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// IdempotencyConfig is the idempotency part of [Config].
type IdempotencyConfig struct {
	// Routes honour Idempotency-Key, keyed like Config.Routes.
	Routes []string `yaml:"routes"`
	// TTL is how long a response is kept for replay. Default: 24h.
	TTL time.Duration `yaml:"ttl"`
	// Lease is how long a running request holds its key; it must exceed
	// the slowest handler. Default: 10m.
	Lease time.Duration `yaml:"lease"`
	// MaxBody is the largest response kept for replay. Default: 1MiB.
	MaxBody ByteSize `yaml:"max_body"`
	// MaxEntries caps the memory store. Default:
	// idempotency.DefaultMaxEntries.
	MaxEntries int `yaml:"max_entries"`
	// Fail is "closed" (default: 503 while the store is unreachable) or
	// "open" (requests run without idempotency).
	Fail string `yaml:"fail"`
}

// BudgetConfig is a spending cap: Limit per Period.
type BudgetConfig struct {
	// Limit is the most that may be spent per period, in USD ("5.00").
	Limit Money `yaml:"limit"`
	// Period is none (lifetime), daily, weekly or monthly. Default:
	// monthly.
	Period string `yaml:"period"`
}

// BudgetsConfig is the budget part of [Config].
type BudgetsConfig struct {
	// Routes are the billable routes, keyed like Config.Routes; requests to
	// other routes are not budgeted.
	Routes []string `yaml:"routes"`
	// Accounts holds each account's budget, shared by all its keys.
	Accounts map[string]BudgetConfig `yaml:"accounts"`
	// TimeZone is where periods start and end (an IANA name). Default: UTC.
	TimeZone string `yaml:"time_zone"`
}

// AdmissionOptions is the admission part of [Config].
type AdmissionOptions struct {
	// Fail is "closed" (default: 503 service_unavailable while the store
	// is unreachable) or "open" (requests pass unlimited and unbudgeted).
	Fail string `yaml:"fail"`
	// TTL is how long an unsettled reservation holds its concurrency slots
	// and budget amounts; it should exceed the longest request. Default:
	// admission.DefaultTTL (10m).
	TTL time.Duration `yaml:"ttl"`
	// DefaultOutputTokens is the output allowance of a request that sets
	// no max_tokens, before token limits and budgets lower it to the room
	// they have. Default: 4096.
	DefaultOutputTokens int64 `yaml:"default_output_tokens"`
}

// PricesConfig is the price list of [Config].
type PricesConfig struct {
	// Models maps a model to its price.
	Models map[string]PriceConfig `yaml:"models"`
	// Default prices models missing from Models; unset, they are free.
	Default *PriceConfig `yaml:"default"`
}

// PriceConfig is a model's price in USD per million tokens.
type PriceConfig struct {
	// Input is the price of a million prompt tokens ("0.50").
	Input Money `yaml:"input"`
	// Output is the price of a million completion tokens ("1.50").
	Output Money `yaml:"output"`
}

// Money is an amount of US dollars that reads from YAML as a decimal
// ("5.00", "0.000001") into exact micro-units, never through a float.
type Money budget.Micros

// UnmarshalYAML parses a decimal amount, naming the line of a value it
// cannot read.
func (m *Money) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: an amount must be a decimal number of USD like \"5.00\"", node.Line)
	}
	v, err := budget.ParseMicros(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", node.Line, err)
	}
	if v < 0 {
		return fmt.Errorf("line %d: an amount must not be negative", node.Line)
	}
	*m = Money(v)
	return nil
}

// CatalogConfig is the catalog part of [Config].
type CatalogConfig struct {
	// AnthropicOverloadedStatus is the status model_overloaded answers
	// with on routes in the anthropic shape: 503, the catalog's (default),
	// or 529, Anthropic's own, which its SDKs decode as OverloadedError
	// and retry. Routes in other shapes always answer 503.
	AnthropicOverloadedStatus int `yaml:"anthropic_overloaded_status"`
}

// RouteConfig is the per-route part of [Config].
type RouteConfig struct {
	// BodyLimit caps this route's request bodies. Zero takes the service's
	// limit; a negative value means no limit.
	BodyLimit ByteSize `yaml:"body_limit"`
	// Shape is the error envelope's layout on this route, mid-stream
	// errors included; empty takes Config.Shape. On anthropic routes every
	// response also carries request-id, and the rate-limit headers are
	// Anthropic's anthropic-ratelimit-* instead of x-ratelimit-*. A
	// request that matches no route (404, 405) takes the shape of the
	// route whose path is the longest prefix of its own, segment by
	// segment.
	Shape apierrors.Shape `yaml:"shape"`
	// LimitConfig holds the route's default rate limits, for principals
	// whose tier and key set none.
	LimitConfig `yaml:",inline"`
}

// LimitConfig is a set of limits: requests and tokens per minute (or
// input and output tokens per minute, split), each with an optional
// burst, and requests at once. Zero means "not set
// here": the next level's limit applies.
type LimitConfig struct {
	// RPM is requests per minute.
	RPM int64 `yaml:"rpm"`
	// RPMBurst is the most requests that can be saved up and made at once.
	// Default: RPM.
	RPMBurst int64 `yaml:"rpm_burst"`
	// TPM is tokens per minute: each request reserves its prompt estimate
	// plus its output allowance, and gets back what it did not use.
	TPM int64 `yaml:"tpm"`
	// TPMBurst is the most tokens that can be saved up, and so the most
	// one request can reserve. Default: TPM.
	TPMBurst int64 `yaml:"tpm_burst"`
	// ITPM is input tokens per minute, on their own: each request
	// reserves its prompt estimate and gets back what it did not use.
	ITPM int64 `yaml:"itpm"`
	// ITPMBurst is the most input tokens that can be saved up, and so the
	// largest prompt one request can send. Default: ITPM.
	ITPMBurst int64 `yaml:"itpm_burst"`
	// OTPM is output tokens per minute, on their own: each request
	// reserves its output allowance and gets back what it did not use.
	OTPM int64 `yaml:"otpm"`
	// OTPMBurst is the most output tokens that can be saved up, and so the
	// largest allowance (max_tokens) of one request. Default: OTPM.
	OTPMBurst int64 `yaml:"otpm_burst"`
	// MaxParallel is the most requests of one key that may run on the
	// route at once.
	MaxParallel int64 `yaml:"max_parallel"`
}

// AuthConfig is the authentication part of [Config].
type AuthConfig struct {
	// Paths are the path prefixes whose requests need a key. Default:
	// every path, once keys (or a KeyStore) are configured.
	Paths []string `yaml:"paths"`
	// Headers are where the key is read, in order: "Authorization" (as
	// "Bearer KEY") or any header holding the key alone. Default:
	// Authorization, then X-Api-Key.
	Headers []string `yaml:"headers"`
}

// KeyConfig is one API key and who holds it.
type KeyConfig struct {
	// ID names the principal in limits, logs and metrics. Required.
	ID string `yaml:"id"`
	// Key is the raw key. Prefer KeySHA256 outside demos: a config file
	// then holds nothing that authenticates.
	Key string `yaml:"key"`
	// KeySHA256 is the hex SHA-256 digest of the key (`printf %s KEY |
	// sha256sum`).
	KeySHA256 string `yaml:"key_sha256"`
	// Account is the account the key belongs to. Default: the ID.
	Account string `yaml:"account"`
	// Tier names an entry of Config.Tiers.
	Tier string `yaml:"tier"`
	// Models the key may use; empty takes the tier's list, and an empty
	// tier list allows every model.
	Models []string `yaml:"models"`
	// LimitConfig overrides the tier's and routes' limits for this key on
	// every limited route.
	LimitConfig `yaml:",inline"`
	// Budget caps this key's spending; unset, the tier's budget applies.
	Budget *BudgetConfig `yaml:"budget"`
}

// TierConfig is one plan: its models and its rate limits.
type TierConfig struct {
	// Models the tier's keys may use; empty allows every model.
	Models []string `yaml:"models"`
	// LimitConfig holds the tier's limits on every route the tier does
	// not name in Routes.
	LimitConfig `yaml:",inline"`
	// Routes holds the tier's limits per route, keyed like Config.Routes.
	Routes map[string]LimitConfig `yaml:"routes"`
	// Budget caps the spending of each key of the tier (each its own).
	Budget *BudgetConfig `yaml:"budget"`
}

// LoadConfig reads a YAML configuration file strictly: an unknown key or
// a value of the wrong type is an error naming the file and line.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gatekit: reading config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("gatekit: %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML strictly into a Config and checks it; an empty
// document is the zero Config.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !stderrors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !stderrors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("invalid configuration: more than one YAML document")
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports the first problem in cfg: an unknown shape, a
// malformed route key, a key without id or with two ways to match it, a
// tier that does not exist, or a negative limit.
func (cfg Config) Validate() error {
	if _, err := apierrors.ParseShape(string(cfg.Shape)); err != nil {
		return fmt.Errorf("invalid configuration: shape: %w", err)
	}
	switch cfg.Catalog.AnthropicOverloadedStatus {
	case 0, http.StatusServiceUnavailable, apierrors.StatusOverloaded:
	default:
		return fmt.Errorf("invalid configuration: catalog: anthropic_overloaded_status must be 503 or 529, not %d", cfg.Catalog.AnthropicOverloadedStatus)
	}
	for key, rc := range cfg.Routes {
		if _, _, err := parseRouteKey(key); err != nil {
			return fmt.Errorf("invalid configuration: routes: %w", err)
		}
		if _, err := apierrors.ParseShape(string(rc.Shape)); err != nil {
			return fmt.Errorf("invalid configuration: routes: %q: shape: %w", key, err)
		}
		if err := rc.LimitConfig.validate(); err != nil {
			return fmt.Errorf("invalid configuration: routes: %q: %w", key, err)
		}
	}
	for name, t := range cfg.Tiers {
		if err := t.LimitConfig.validate(); err != nil {
			return fmt.Errorf("invalid configuration: tier %q: %w", name, err)
		}
		for key, lc := range t.Routes {
			if _, _, err := parseRouteKey(key); err != nil {
				return fmt.Errorf("invalid configuration: tier %q: %w", name, err)
			}
			if err := lc.validate(); err != nil {
				return fmt.Errorf("invalid configuration: tier %q: route %q: %w", name, key, err)
			}
		}
	}
	ids := map[string]bool{}
	for i, k := range cfg.Keys {
		switch {
		case k.ID == "":
			return fmt.Errorf("invalid configuration: keys[%d]: id is required", i)
		case ids[k.ID]:
			return fmt.Errorf("invalid configuration: keys[%d]: id %q is used twice", i, k.ID)
		case (k.Key == "") == (k.KeySHA256 == ""):
			return fmt.Errorf("invalid configuration: key %q: give exactly one of key and key_sha256", k.ID)
		}
		ids[k.ID] = true
		if k.KeySHA256 != "" {
			if _, err := middleware.ParseKeyDigest(k.KeySHA256); err != nil {
				return fmt.Errorf("invalid configuration: key %q: key_sha256: %w", k.ID, err)
			}
		}
		if _, ok := cfg.Tiers[k.Tier]; k.Tier != "" && !ok {
			return fmt.Errorf("invalid configuration: key %q: tier %q is not defined", k.ID, k.Tier)
		}
		if err := k.LimitConfig.validate(); err != nil {
			return fmt.Errorf("invalid configuration: key %q: %w", k.ID, err)
		}
	}
	for _, p := range cfg.Auth.Paths {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("invalid configuration: auth: path %q must start with /", p)
		}
	}
	switch cfg.Admission.Fail {
	case "", "closed", "open":
	default:
		return fmt.Errorf("invalid configuration: admission: fail must be \"open\" or \"closed\", not %q", cfg.Admission.Fail)
	}
	if cfg.Admission.TTL < 0 || cfg.Admission.DefaultOutputTokens < 0 {
		return fmt.Errorf("invalid configuration: admission: ttl and default_output_tokens must not be negative")
	}
	if p := cfg.RuntimeKeys.Prefix; p != "" {
		if err := keys.CheckPrefix(p); err != nil {
			return fmt.Errorf("invalid configuration: runtime_keys: prefix: %w", err)
		}
	}
	return cfg.validateBudgets()
}

// validateBudgets checks the budget and price sections.
func (cfg Config) validateBudgets() error {
	b := cfg.Budgets
	for _, r := range b.Routes {
		if _, _, err := parseRouteKey(r); err != nil {
			return fmt.Errorf("invalid configuration: budgets: %w", err)
		}
	}
	if _, err := loadLocation(b.TimeZone); err != nil {
		return fmt.Errorf("invalid configuration: budgets: %w", err)
	}
	check := func(where string, bc *BudgetConfig) error {
		if bc == nil {
			return nil
		}
		if _, err := bc.period(); err != nil {
			return fmt.Errorf("invalid configuration: %s: %w", where, err)
		}
		if budget.Micros(bc.Limit) > budget.MaxMicros {
			return fmt.Errorf("invalid configuration: %s: limit is too large", where)
		}
		return nil
	}
	for name, a := range b.Accounts {
		if strings.ContainsAny(name, "{}") {
			return fmt.Errorf("invalid configuration: budgets: account %q must not contain '{' or '}'", name)
		}
		if err := check("budgets: account "+name, &a); err != nil {
			return err
		}
	}
	for name, t := range cfg.Tiers {
		if err := check("tier "+name+": budget", t.Budget); err != nil {
			return err
		}
	}
	for _, k := range cfg.Keys {
		if err := check("key "+k.ID+": budget", k.Budget); err != nil {
			return err
		}
		if strings.ContainsAny(k.Account, "{}") {
			return fmt.Errorf("invalid configuration: key %q: account must not contain '{' or '}'", k.ID)
		}
	}
	id := cfg.Idempotency
	for _, r := range id.Routes {
		if _, _, err := parseRouteKey(r); err != nil {
			return fmt.Errorf("invalid configuration: idempotency: %w", err)
		}
	}
	switch id.Fail {
	case "", "closed", "open":
	default:
		return fmt.Errorf("invalid configuration: idempotency: fail must be \"open\" or \"closed\", not %q", id.Fail)
	}
	if id.TTL < 0 || id.Lease < 0 || id.MaxBody < 0 || id.MaxEntries < 0 {
		return fmt.Errorf("invalid configuration: idempotency: ttl, lease, max_body and max_entries must not be negative")
	}
	return nil
}

// period parses the budget's period; empty is monthly.
func (bc BudgetConfig) period() (budget.Period, error) {
	if bc.Period == "" {
		return budget.Monthly, nil
	}
	return budget.ParsePeriod(bc.Period)
}

// loadLocation reads an IANA zone name; empty is UTC.
func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time_zone %q: %w", name, err)
	}
	return loc, nil
}

// validate rejects negative figures and bursts without a rate.
func (lc LimitConfig) validate() error {
	if lc.RPM < 0 || lc.TPM < 0 || lc.RPMBurst < 0 || lc.TPMBurst < 0 || lc.MaxParallel < 0 ||
		lc.ITPM < 0 || lc.ITPMBurst < 0 || lc.OTPM < 0 || lc.OTPMBurst < 0 {
		return fmt.Errorf("limits must not be negative")
	}
	if (lc.RPMBurst > 0 && lc.RPM == 0) || (lc.TPMBurst > 0 && lc.TPM == 0) ||
		(lc.ITPMBurst > 0 && lc.ITPM == 0) || (lc.OTPMBurst > 0 && lc.OTPM == 0) {
		return fmt.Errorf("a burst needs its rate (rpm, tpm, itpm or otpm)")
	}
	l := lc.limits()
	for _, p := range []*ratelimit.Policy{l.Requests, l.Tokens, l.InputTokens, l.OutputTokens} {
		if p == nil {
			continue
		}
		if err := p.Valid(); err != nil {
			return err
		}
	}
	return nil
}

// limits turns lc into policies; unset figures stay nil.
func (lc LimitConfig) limits() middleware.Limits {
	var l middleware.Limits
	if lc.RPM > 0 {
		p := ratelimit.PerMinute(lc.RPM).WithBurst(lc.RPMBurst)
		l.Requests = &p
	}
	if lc.TPM > 0 {
		p := ratelimit.PerMinute(lc.TPM).WithBurst(lc.TPMBurst)
		l.Tokens = &p
	}
	if lc.ITPM > 0 {
		p := ratelimit.PerMinute(lc.ITPM).WithBurst(lc.ITPMBurst)
		l.InputTokens = &p
	}
	if lc.OTPM > 0 {
		p := ratelimit.PerMinute(lc.OTPM).WithBurst(lc.OTPMBurst)
		l.OutputTokens = &p
	}
	l.MaxParallel = lc.MaxParallel
	return l
}

// parseRouteKey splits "POST /v1/x" into method and path; "/v1/x" alone
// has the empty method, meaning every method.
func parseRouteKey(key string) (method, path string, err error) {
	method, path, ok := strings.Cut(strings.TrimSpace(key), " ")
	if !ok {
		method, path = "", key
	}
	path = strings.TrimSpace(path)
	if !strings.HasPrefix(path, "/") {
		return "", "", fmt.Errorf("route %q: want \"METHOD /path\" or \"/path\"", key)
	}
	if method != "" {
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
			http.MethodDelete, http.MethodOptions:
		default:
			return "", "", fmt.Errorf("route %q: unknown method %q", key, method)
		}
	}
	return method, path, nil
}

// ByteSize is a number of bytes that reads from YAML as an integer or with
// a unit: "512KiB", "1 MiB", "75MB", "2GB". The binary units (KiB, MiB,
// GiB) are powers of 1024; kB, MB and GB are powers of 1000.
type ByteSize int64

// UnmarshalYAML parses an integer or a size with a unit, naming the line
// of a value it cannot read.
func (b *ByteSize) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number of bytes or a string like \"1MiB\"", node.Line)
	}
	n, err := ParseByteSize(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", node.Line, err)
	}
	*b = n
	return nil
}

// ParseByteSize reads "1048576", "1MiB", "1 MiB", "75MB" or "unlimited"
// (-1).
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	if s == "unlimited" {
		return -1, nil
	}
	i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) && r != '-' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	mult := map[string]int64{"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, kB, MB, GB, KiB, MiB or GiB)", s, unit)
	}
	if n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return ByteSize(n * mult), nil
}

// String writes the size with the largest unit that divides it.
func (b ByteSize) String() string {
	if b < 0 {
		return "unlimited"
	}
	return apierrors.FormatBytes(int64(b))
}
