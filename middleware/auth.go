package middleware

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/internal/logthrottle"
)

// Principal is who a request acts for, resolved from its API key. Limits,
// budgets, logs and metrics are keyed by ID, never by the key itself.
type Principal struct {
	// ID identifies the key (for example "key_acme_prod"); it is safe to log.
	ID string
	// Account is the account the key belongs to; budgets may be shared by
	// every key of an account.
	Account string
	// Tier names the key's plan ("free", "pro"); per-tier policies apply.
	Tier string
	// Models lists the models the key may use; empty means every model.
	Models []string
	// Limits overrides the tier's and the route's rate limits for this key;
	// nil fields inherit.
	Limits Limits
	// Budgets are the spending caps a billable request by this key must
	// fit: typically the key's own and its account's, all with the account
	// as Tag.
	Budgets []budget.Scope
}

// AllowsModel reports whether p may use model.
func (p *Principal) AllowsModel(model string) bool {
	return len(p.Models) == 0 || slices.Contains(p.Models, model)
}

// KeyStore resolves API keys to principals.
type KeyStore interface {
	// Lookup returns the principal holding key, or ok == false when no
	// principal does. err is non-nil only when the store itself failed,
	// or when it knows the key but refuses it for a reason the client is
	// to be told: then err is an *apierrors.Error with a 4xx status (401
	// expired_api_key), answered as it is. An unknown key is not an error.
	Lookup(ctx context.Context, key string) (p *Principal, ok bool, err error)
}

// StaticKeys is a KeyStore held in memory. It keeps only SHA-256 digests of
// the keys and compares them in constant time, so neither a memory dump nor
// response timing gives a key away. It is safe for concurrent use once
// built.
type StaticKeys struct {
	// byIndex buckets keys by the first 8 bytes of their digest; the full
	// digest is then compared in constant time.
	byIndex map[uint64][]staticKey
}

type staticKey struct {
	digest    [sha256.Size]byte
	principal *Principal
}

var _ KeyStore = (*StaticKeys)(nil)

// NewStaticKeys returns an empty StaticKeys.
func NewStaticKeys() *StaticKeys {
	return &StaticKeys{byIndex: map[uint64][]staticKey{}}
}

// Add registers p under the raw key. It fails for an empty key, a principal
// without ID, or a key registered twice.
func (s *StaticKeys) Add(key string, p *Principal) error {
	if key == "" {
		return fmt.Errorf("static keys: empty key for principal %q", p.ID)
	}
	return s.AddDigest(sha256.Sum256([]byte(key)), p)
}

// AddDigest registers p under the SHA-256 digest of its key, for
// configurations that never hold the raw key.
func (s *StaticKeys) AddDigest(digest [sha256.Size]byte, p *Principal) error {
	if p == nil || p.ID == "" {
		return fmt.Errorf("static keys: a principal needs an ID")
	}
	i := digestIndex(digest)
	for _, k := range s.byIndex[i] {
		if k.digest == digest {
			return fmt.Errorf("static keys: principal %q: the same key is registered twice", p.ID)
		}
	}
	s.byIndex[i] = append(s.byIndex[i], staticKey{digest: digest, principal: p})
	return nil
}

// ParseKeyDigest reads a hex SHA-256 digest, as `sha256sum` prints it.
func ParseKeyDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != sha256.Size {
		return d, fmt.Errorf("invalid SHA-256 digest: want 64 hex digits")
	}
	copy(d[:], b)
	return d, nil
}

// Lookup hashes key and finds its principal, comparing digests in
// constant time.
func (s *StaticKeys) Lookup(_ context.Context, key string) (*Principal, bool, error) {
	// Hashing from a stack buffer keeps keys of up to 128 bytes off the
	// heap; the conversion would allocate for any key over 32.
	var buf [128]byte
	d := sha256.Sum256(append(buf[:0], key...))
	var found *Principal
	for _, k := range s.byIndex[digestIndex(d)] {
		if subtle.ConstantTimeCompare(k.digest[:], d[:]) == 1 {
			found = k.principal
		}
	}
	return found, found != nil, nil
}

// digestIndex is the first 8 bytes of a digest, the non-secret part used
// to find candidates.
func digestIndex(d [sha256.Size]byte) uint64 {
	return binary.BigEndian.Uint64(d[:8])
}

// AuthConfig configures [AuthWithConfig].
type AuthConfig struct {
	// Skipper skips authentication for a request when it returns true (for
	// example a health check). Default: never skip.
	Skipper middleware.Skipper
	// Keys resolves keys to principals. Required.
	Keys KeyStore
	// Headers lists where the key is looked for, in order: "Authorization"
	// (as "Bearer KEY") and/or any other header holding the key alone.
	// Default: Authorization, then X-Api-Key.
	Headers []string
	// Metrics, when set, counts failed authentications by reason
	// (missing_key, malformed_header, unknown_key, refused_key, store_error), never by
	// key.
	Metrics *Metrics
	// Logger receives a warning for failed authentications, with the
	// reason and the client's address (never the key), at most one line a
	// second with the number of failures left out. The address is the
	// connection's, or Echo's RealIP when the Echo instance has an
	// IPExtractor. Default: slog.Default().
	Logger *slog.Logger
}

// The reasons an authentication fails, as the "reason" label of
// gatekit_auth_failures_total and the "reason" attribute of the log line.
const (
	authMissingKey      = "missing_key"
	authMalformedHeader = "malformed_header"
	authUnknownKey      = "unknown_key"
	authStoreError      = "store_error"
	authRefusedKey      = "refused_key"
)

// Auth authenticates every request against keys, reading the key from
// Authorization: Bearer or X-Api-Key.
func Auth(keys KeyStore) echo.MiddlewareFunc {
	return mustMiddleware(AuthWithConfig(AuthConfig{Keys: keys}))
}

// AuthWithConfig resolves each request's API key to a [Principal], which
// [GetPrincipal] returns to later middleware and handlers. A request with
// no key is 401 missing_api_key; one whose Authorization header is not
// "Bearer KEY" (another scheme, no key) is 401 missing_api_key saying so;
// one whose key is unknown is 401 invalid_api_key; one the KeyStore
// refuses with a 4xx *apierrors.Error (an expired key) gets that error; a
// failing KeyStore is
// 503 service_unavailable. Failures are counted and logged (throttled) as
// cfg says. The key never appears in errors, logs or metrics.
func AuthWithConfig(cfg AuthConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg; it fails without a
// KeyStore.
func (cfg AuthConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg AuthConfig) ToStep() (Step, error) {
	if cfg.Keys == nil {
		return nil, fmt.Errorf("auth: a KeyStore is required")
	}
	if cfg.Skipper == nil {
		cfg.Skipper = middleware.DefaultSkipper
	}
	if len(cfg.Headers) == 0 {
		cfg.Headers = []string{echo.HeaderAuthorization, "X-Api-Key"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	headers := make([]string, len(cfg.Headers))
	for i, h := range cfg.Headers {
		headers[i] = http.CanonicalHeaderKey(h)
	}
	throttle := &logthrottle.Throttle{}
	failed := func(c echo.Context, reason string, e *apierrors.Error) error {
		cfg.Metrics.authFailed(reason)
		req := c.Request()
		throttle.Log(req.Context(), cfg.Logger, slog.LevelWarn, "authentication failed",
			slog.String("reason", reason),
			slog.String("client", clientAddress(c)),
			slog.String("method", apierrors.Clip(req.Method)),
			slog.String("path", apierrors.Clip(req.URL.Path)),
			slog.String("request_id", GetRequestID(c)))
		return e
	}
	return func(c echo.Context, next echo.HandlerFunc) error {
		if cfg.Skipper(c) {
			return next(c)
		}
		key, malformed := apiKey(c.Request().Header, headers)
		if key == "" {
			if malformed {
				return failed(c, authMalformedHeader, apierrors.MalformedAuthorization())
			}
			return failed(c, authMissingKey, apierrors.MissingAPIKey())
		}
		p, ok, err := cfg.Keys.Lookup(c.Request().Context(), key)
		if err != nil {
			if refused := refusal(err); refused != nil {
				return failed(c, authRefusedKey, refused)
			}
			cfg.Metrics.authFailed(authStoreError)
			return apierrors.ServiceUnavailable(0).WithCause(fmt.Errorf("auth: key store: %w", err))
		}
		if !ok {
			return failed(c, authUnknownKey, apierrors.InvalidAPIKey())
		}
		state(c).principal = p
		return next(c)
	}, nil
}

// refusal is the 4xx *apierrors.Error in a KeyStore's err, or nil when err
// is a failure of the store.
func refusal(err error) *apierrors.Error {
	var e *apierrors.Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 {
		return e
	}
	return nil
}

// apiKey finds the key in the first configured header that holds one.
// With no key found, malformed reports whether an Authorization header was
// there but not in the form "Bearer KEY" (the scheme in any case, then
// spaces or tabs).
func apiKey(h http.Header, headers []string) (key string, malformed bool) {
	for _, name := range headers {
		v := h[name]
		if len(v) == 0 {
			continue
		}
		if name == echo.HeaderAuthorization {
			if strings.TrimSpace(v[0]) == "" {
				continue
			}
			scheme, token, _ := strings.Cut(strings.TrimSpace(v[0]), " ")
			if i := strings.IndexAny(scheme, "\t"); i >= 0 {
				scheme, token = scheme[:i], scheme[i+1:]+" "+token
			}
			if strings.EqualFold(scheme, "Bearer") {
				if token = strings.TrimSpace(token); token != "" {
					return token, false
				}
			}
			malformed = true
			continue
		}
		if k := strings.TrimSpace(v[0]); k != "" {
			return k, false
		}
	}
	return "", malformed
}

// GetPrincipal returns the principal [Auth] resolved for the request, or
// nil when the request was not authenticated.
func GetPrincipal(c echo.Context) *Principal {
	if st := peekState(c); st != nil {
		return st.principal
	}
	return nil
}

// RequireModel returns 403 model_not_allowed when the request's principal
// may not use model, and nil otherwise (also when no principal was
// resolved). Handlers call it once they know the model.
func RequireModel(c echo.Context, model string) error {
	p := GetPrincipal(c)
	if p == nil || p.AllowsModel(model) {
		return nil
	}
	return apierrors.ModelNotAllowed(model)
}
