package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admin"
	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/gatekit/gatekit/internal/testclock"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/keys/redisstore"
	"github.com/gatekit/gatekit/middleware"
)

const token = "admin-token-0123456789"

// redisServer is this package's redis-server, started by the first test
// that needs it and stopped by TestMain.
var redisServer = redistest.New()

func TestMain(m *testing.M) {
	m.Run()
	redisServer.Close()
}

const config = `
auth:
  paths: [/v1/]
routes:
  "GET /v1/whoami": {rpm: 5}
tiers:
  free: {models: [gk-echo]}
keys:
  - {id: file-key, key: sk-from-the-file, account: demo, tier: free}
`

// service is one instance: gatekit mounted with runtime keys, a route
// answering who the caller is, and the admin API under /admin/v1.
type service struct {
	t    *testing.T
	srv  *httptest.Server
	gate *gatekit.Gate
}

func newService(t *testing.T, store keys.Store, rc *keys.Config) *service {
	t.Helper()
	cfg, err := gatekit.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeKeys.Store = store
	cfg.RuntimeKeys.Registry = rc
	cfg.Logger = slogDiscard()
	e := echo.New()
	g, err := gatekit.Mount(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.GET("/v1/whoami", func(c echo.Context) error {
		return c.String(http.StatusOK, middleware.GetPrincipal(c).ID)
	})
	if err := admin.Register(e.Group("/admin/v1"), admin.Config{Gate: g, Token: token}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() { srv.Close(); g.Close() })
	return &service{t: t, srv: srv, gate: g}
}

// admin sends an admin request and decodes its JSON answer into out.
func (s *service) admin(method, path, body string, out any) *http.Response {
	s.t.Helper()
	res, b := s.send(method, path, body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return res
}

// adminRaw sends an admin request and returns its status and body.
func (s *service) adminRaw(method, path, body string) (int, string) {
	s.t.Helper()
	res, b := s.send(method, path, body)
	return res.StatusCode, string(b)
}

// send sends an admin request, JSON when it has a body, and returns the
// response and its body, read whole.
func (s *service) send(method, path, body string) (*http.Response, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.srv.URL+"/admin/v1"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// call sends GET /v1/whoami with key and returns the status and body.
func (s *service) call(key string) (int, string, http.Header) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

type newKey struct {
	keys.Key
	Secret string `json:"secret"`
}

type envelope struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

func code(body string) string {
	var e envelope
	json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}

func TestAKeyCreatedThroughTheAPIWorksAtOnce(t *testing.T) {
	s := newService(t, keys.NewMemory(), nil)
	var k newKey
	res := s.admin(http.MethodPost, "/keys", `{"account": "acme", "tier": "free"}`, &k)
	if res.StatusCode != http.StatusCreated || !keys.WellFormed(keys.DefaultPrefix, k.Secret) || k.Account != "acme" {
		t.Fatalf("create: %d %+v", res.StatusCode, k)
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Error("the secret's response may be cached")
	}
	if status, body, _ := s.call(k.Secret); status != http.StatusOK || body != k.ID {
		t.Fatalf("using the new key: %d %s", status, body)
	}
	// Reading it back shows no secret.
	var raw map[string]any
	s.admin(http.MethodGet, "/keys/"+k.ID, "", &raw)
	if _, ok := raw["secret"]; ok || raw["hint"] != keys.Hint(k.Secret) {
		t.Fatalf("get: %v", raw)
	}
	// The file's key works and is listed, read-only.
	if status, body, _ := s.call("sk-from-the-file"); status != http.StatusOK || body != "file-key" {
		t.Fatalf("the file's key: %d %s", status, body)
	}
	var e envelope
	if res := s.admin(http.MethodPost, "/keys/file-key/revoke", "", &e); res.StatusCode != http.StatusConflict || e.Error.Code != "conflict" {
		t.Fatalf("revoking the file's key: %d %+v", res.StatusCode, e)
	}
}

func TestListPagesWithoutSecrets(t *testing.T) {
	s := newService(t, keys.NewMemory(), nil)
	for _, id := range []string{"k3", "k1", "k2"} {
		s.admin(http.MethodPost, "/keys", `{"id": "`+id+`", "account": "acme"}`, nil)
	}
	var ids []string
	after := ""
	for range 10 {
		var p struct {
			Data      []map[string]any `json:"data"`
			HasMore   bool             `json:"has_more"`
			NextAfter string           `json:"next_after"`
		}
		s.admin(http.MethodGet, "/keys?limit=2&after="+after, "", &p)
		for _, k := range p.Data {
			if _, ok := k["secret"]; ok {
				t.Fatal("a listing shows a secret")
			}
			ids = append(ids, k["id"].(string))
		}
		if !p.HasMore {
			break
		}
		after = p.NextAfter
	}
	if strings.Join(ids, ",") != "file-key,k1,k2,k3" {
		t.Fatalf("listed %v", ids)
	}
}

func TestAdminNeedsTheToken(t *testing.T) {
	s := newService(t, keys.NewMemory(), nil)
	for _, tc := range []struct{ auth, code string }{{"", "missing_api_key"}, {"Bearer wrong-token-0123456789", "invalid_api_key"}, {"Basic " + token, "missing_api_key"}} {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/admin/v1/keys", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || code(string(b)) != tc.code {
			t.Errorf("%q: %d %s", tc.auth, res.StatusCode, b)
		}
	}
}

func TestBadInputGetsAnEnvelopeError(t *testing.T) {
	s := newService(t, keys.NewMemory(), nil)
	for _, tc := range []struct{ method, path, body, code, param string }{
		{http.MethodPost, "/keys", `{"account": "acme", "colour": "red"}`, "invalid_argument", "colour"},
		{http.MethodPost, "/keys", `{"account": 7}`, "invalid_argument", "account"},
		{http.MethodPost, "/keys", `{"account": "acme"`, "invalid_request", ""},
		{http.MethodPost, "/keys", ``, "invalid_request", ""},
		{http.MethodPost, "/keys", `{}`, "invalid_argument", "account"},
		{http.MethodPost, "/keys", `{"account": "a b"}`, "invalid_request", ""},
		{http.MethodPost, "/keys", `{"account": "acme", "tier": "gold"}`, "invalid_request", ""},
		{http.MethodPost, "/keys", `{"account": "acme", "budget": {"limit_usd": "x"}}`, "invalid_argument", "budget"},
		{http.MethodPost, "/keys", `{"account": "acme", "limits": {"rpm": -1}}`, "invalid_request", ""},
		{http.MethodGet, "/keys?limit=0", ``, "invalid_argument", "limit"},
		{http.MethodGet, "/keys/nope", ``, "not_found", ""},
		{http.MethodPatch, "/keys/file-key", `{"owner": "x"}`, "invalid_argument", "owner"},
		{http.MethodPost, "/keys/nope/rotate", `{"grace_seconds": -5}`, "invalid_argument", "grace_seconds"},
		{http.MethodGet, "/keys/file-key/usage?route=chat", ``, "invalid_argument", "route"},
		{http.MethodPut, "/accounts/acme/budget", `{"limit_usd": "1", "period": "hourly"}`, "invalid_request", ""},
	} {
		var e envelope
		res := s.admin(tc.method, tc.path, tc.body, &e)
		param := ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if res.StatusCode < 400 || res.StatusCode >= 500 || e.Error.Code != tc.code || param != tc.param || e.Error.Message == "" {
			t.Errorf("%s %s %s: %d %+v", tc.method, tc.path, tc.body, res.StatusCode, e.Error)
		}
	}
}

// The admin API decodes bodies as the binder does: names match exactly,
// a name given twice and invalid UTF-8 are refused, and every error names
// its place with array indices.
func TestAdminDecodesBodiesAsStrictlyAsTheBinder(t *testing.T) {
	s := newService(t, keys.NewMemory(), nil)
	var k newKey
	if res := s.admin(http.MethodPost, "/keys", `{"id": "k1", "account": "acme"}`, &k); res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", res.StatusCode)
	}
	for _, tc := range []struct{ method, path, body, code, param string }{
		{http.MethodPost, "/keys", `{"ACCOUNT": "acme"}`, "invalid_argument", "ACCOUNT"},
		{http.MethodPost, "/keys", `{"account": "acme", "account": "evil"}`, "invalid_argument", "account"},
		{http.MethodPost, "/keys", `{"account": "acme", "models": ["a", 5]}`, "invalid_argument", "models[1]"},
		{http.MethodPost, "/keys", `{"account": "acme", "limits": {"RPM": 5}}`, "invalid_argument", "limits.RPM"},
		{http.MethodPost, "/keys", "{\"account\": \"ac\xffme\"}", "invalid_request", "account"},
		{http.MethodPatch, "/keys/k1", `{"models": ["a", 5]}`, "invalid_argument", "models[1]"},
		{http.MethodPatch, "/keys/k1", `{"tier": "free", "tier": "gold"}`, "invalid_argument", "tier"},
		{http.MethodPatch, "/keys/k1", `{"Tier": "free"}`, "invalid_argument", "Tier"},
		{http.MethodPatch, "/keys/k1", `{"limits": {"rpm": "5"}}`, "invalid_argument", "limits.rpm"},
		{http.MethodPatch, "/keys/k1", `{"limits": {"RPM": 5}}`, "invalid_argument", "limits.RPM"},
		{http.MethodPatch, "/keys/k1", `{"budget": {"limit_usd": "1", "limit_usd": "2"}}`, "invalid_argument", "budget.limit_usd"},
		{http.MethodPost, "/keys/k1/rotate", `{"grace_seconds": 5, "grace_seconds": 0}`, "invalid_argument", "grace_seconds"},
		{http.MethodPut, "/accounts/acme/budget", `{"limit_usd": "1", "limit_usd": "1000"}`, "invalid_argument", "limit_usd"},
		{http.MethodPut, "/accounts/acme/budget", `{"LIMIT_USD": "1000"}`, "invalid_argument", "LIMIT_USD"},
		{http.MethodPost, "/keys", `{"account": "acme", "budget": {"limit_usd": "1", "Period": "daily"}}`, "invalid_argument", "budget.Period"},
	} {
		status, body := s.adminRaw(tc.method, tc.path, tc.body)
		var e envelope
		json.Unmarshal([]byte(body), &e)
		param := ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if status != http.StatusBadRequest || e.Error.Code != tc.code || param != tc.param || strings.Contains(e.Error.Message, "json:") {
			t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body, status, body)
		}
	}
	// A patch that holds each field once, null clearing one, still applies.
	var patched keys.Key
	if res := s.admin(http.MethodPatch, "/keys/k1", `{"models": ["gk-echo"], "limits": {"rpm": 5}, "budget": null}`, &patched); res.StatusCode != http.StatusOK || !slices.Equal(patched.Models, []string{"gk-echo"}) || patched.Limits == nil || patched.Limits.RPM != 5 {
		t.Fatalf("patch: %d %+v", res.StatusCode, patched)
	}
	var cleared keys.Key
	if res := s.admin(http.MethodPatch, "/keys/k1", `{"models": null, "limits": null}`, &cleared); res.StatusCode != http.StatusOK || cleared.Models != nil || cleared.Limits != nil {
		t.Fatalf("clearing patch: %d %+v", res.StatusCode, cleared)
	}
	// Neither the duplicate account nor the refused patches took effect.
	var p struct {
		Data []keys.Key `json:"data"`
	}
	s.admin(http.MethodGet, "/keys", "", &p)
	for _, k := range p.Data {
		if k.Account == "evil" || (k.ID == "k1" && (k.Tier != "" || k.Models != nil)) {
			t.Errorf("a refused request changed the keys: %+v", k)
		}
	}
}

func TestAdminErrorsQuoteBoundedInput(t *testing.T) {
	s := newService(t, keys.NewMemory(), nil)
	long := strings.Repeat("n", 100<<10)
	for _, body := range []string{
		`{"account": "acme", "` + long + `": 1}`,
		`{"account": "acme", "models": [` + strings.Repeat("1", 100<<10) + `]}`,
		`{"account": "acme", "limits": {"` + long + `": 1}}`,
	} {
		status, answer := s.adminRaw(http.MethodPost, "/keys", body)
		if status != http.StatusBadRequest || len(answer) > 2<<10 {
			t.Errorf("%d, %d bytes: %.300s", status, len(answer), answer)
		}
	}
}

func TestRotationKeepsTheOldSecretForItsGraceAndLimitsFollowTheID(t *testing.T) {
	clock := testclock.New(time.Now())
	s := newService(t, keys.NewMemory(), &keys.Config{Now: clock.Now, MaxStale: time.Hour})
	var k newKey
	s.admin(http.MethodPost, "/keys", `{"account": "acme"}`, &k)
	remaining := func(key string) string {
		t.Helper()
		status, body, h := s.call(key)
		if status != http.StatusOK {
			t.Fatalf("%d %s", status, body)
		}
		return h.Get("X-Ratelimit-Remaining-Requests")
	}
	if r := remaining(k.Secret); r != "4" {
		t.Fatalf("remaining %q after the first request, want 4", r)
	}
	var usageBefore gatekit.KeyStatus
	s.admin(http.MethodGet, "/keys/"+k.ID+"/usage?route=GET%20/v1/whoami", "", &usageBefore)
	var rk newKey
	if res := s.admin(http.MethodPost, "/keys/"+k.ID+"/rotate", `{"grace_seconds": 2}`, &rk); res.StatusCode != http.StatusOK || rk.ID != k.ID || rk.Secret == k.Secret {
		t.Fatalf("rotate: %d %+v", res.StatusCode, rk)
	}
	var usageAfter gatekit.KeyStatus
	s.admin(http.MethodGet, "/keys/"+k.ID+"/usage?route=GET%20/v1/whoami", "", &usageAfter)
	if usageAfter.Requests == nil || usageAfter.Requests.Remaining != usageBefore.Requests.Remaining || usageAfter.ID != k.ID {
		t.Fatalf("usage before %+v, after %+v", usageBefore.Requests, usageAfter.Requests)
	}
	// Both secrets draw on the key's one limit.
	if r := remaining(rk.Secret); r != "3" {
		t.Fatalf("remaining %q with the new secret, want 3", r)
	}
	if r := remaining(k.Secret); r != "2" {
		t.Fatalf("remaining %q with the old secret in its grace, want 2", r)
	}
	clock.Advance(2 * time.Second)
	if status, body, _ := s.call(k.Secret); status != http.StatusUnauthorized || code(body) != "invalid_api_key" {
		t.Fatalf("the old secret after its grace: %d %s", status, body)
	}
	if r := remaining(rk.Secret); r != "1" {
		t.Fatalf("remaining %q with the new secret after the grace, want 1", r)
	}
}

func TestAnExpiredKeyAnswersExpiredAPIKey(t *testing.T) {
	clock := testclock.New(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	s := newService(t, keys.NewMemory(), &keys.Config{Now: clock.Now, MaxStale: time.Hour})
	var k newKey
	s.admin(http.MethodPost, "/keys", `{"account": "acme", "expires_at": "2026-06-01T13:00:00Z"}`, &k)
	if status, _, _ := s.call(k.Secret); status != http.StatusOK {
		t.Fatalf("before expiry: %d", status)
	}
	clock.Advance(time.Hour)
	status, body, _ := s.call(k.Secret)
	var e envelope
	json.Unmarshal([]byte(body), &e)
	if status != http.StatusUnauthorized || e.Error.Code != "expired_api_key" || e.Error.Type != "authentication_error" || !strings.Contains(e.Error.Message, "2026-06-01T13:00:00Z") {
		t.Fatalf("after expiry: %d %s", status, body)
	}
	// Extending the expiry lets it in again.
	var got keys.Key
	if res := s.admin(http.MethodPatch, "/keys/"+k.ID, `{"expires_at": null}`, &got); res.StatusCode != http.StatusOK || got.ExpiresAt != nil {
		t.Fatalf("patch: %d %+v", res.StatusCode, got)
	}
	if status, _, _ := s.call(k.Secret); status != http.StatusOK {
		t.Fatalf("after the expiry was lifted: %d", status)
	}
}

func TestRaisingAnAccountBudgetTakesEffectAtOnce(t *testing.T) {
	s := newService(t, keys.NewMemory(), nil)
	var k newKey
	s.admin(http.MethodPost, "/keys", `{"account": "acme"}`, &k)
	var b struct {
		Account string                `json:"account"`
		Budget  *keys.Budget          `json:"budget"`
		Balance *gatekit.BudgetStatus `json:"balance"`
	}
	if res := s.admin(http.MethodPut, "/accounts/acme/budget", `{"limit_usd": "5.00"}`, &b); res.StatusCode != http.StatusOK || b.Balance == nil || b.Balance.Limit != "5.00" || b.Balance.Remaining != "5.00" {
		t.Fatalf("set: %d %+v", res.StatusCode, b)
	}
	s.call(k.Secret) // caches the key with the first budget
	s.admin(http.MethodPut, "/accounts/acme/budget", `{"limit_usd": "50.00", "period": "daily"}`, nil)
	var st gatekit.KeyStatus
	s.admin(http.MethodGet, "/keys/"+k.ID+"/usage", "", &st)
	if len(st.Budgets) != 1 || st.Budgets[0].Limit != "50.00" || st.Budgets[0].Period != "daily" {
		t.Fatalf("usage: %+v", st.Budgets)
	}
	p, ok, err := s.gate.Keys().Lookup(context.Background(), k.Secret)
	if !ok || err != nil || p.Budgets[0].Limit != 50_000_000 {
		t.Fatalf("the principal after the raise: %+v %v %v", p, ok, err)
	}
}

// Two instances share keys on Redis: a key made on one works on the
// other, and once revoked on the first, the second refuses it within 1s.
func TestRevokedKeyRefusedOnASecondInstanceSharingRedis(t *testing.T) {
	prefix := redisServer.KeyPrefix(t)
	store := func() keys.Store {
		s, err := redisstore.New(redisServer.Client(t), &redisstore.Config{Prefix: prefix, Timeout: redistest.SlowTimeout})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := newService(t, store(), nil)
	b := newService(t, store(), nil)
	var k newKey
	if res := a.admin(http.MethodPost, "/keys", `{"account": "acme"}`, &k); res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", res.StatusCode)
	}
	if status, body, _ := b.call(k.Secret); status != http.StatusOK || body != k.ID {
		t.Fatalf("the second instance: %d %s", status, body)
	}
	start := time.Now()
	if res := a.admin(http.MethodPost, "/keys/"+k.ID+"/revoke", "", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", res.StatusCode)
	}
	for {
		status, body, _ := b.call(k.Secret)
		if status == http.StatusUnauthorized && code(body) == "invalid_api_key" {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the second instance still answers %d after 1s", status)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("the second instance refused the revoked key %v after the revocation", time.Since(start))
}

// The OpenAPI file describes exactly the routes Register adds.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	e := echo.New()
	g, err := gatekit.Mount(e, gatekit.Config{RuntimeKeys: gatekit.RuntimeKeysConfig{Store: keys.NewMemory()}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := admin.Register(e.Group("/admin/v1"), admin.Config{Gate: g, Token: token}); err != nil {
		t.Fatal(err)
	}
	var registered []string
	for _, r := range e.Routes() {
		if p, ok := strings.CutPrefix(r.Path, "/admin/v1"); ok && r.Method != echo.RouteNotFound {
			for _, part := range strings.Split(p, "/") {
				if name, ok := strings.CutPrefix(part, ":"); ok {
					p = strings.Replace(p, part, "{"+name+"}", 1)
				}
			}
			registered = append(registered, r.Method+" "+p)
		}
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(admin.OpenAPI())).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var described []string
	for p, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" {
				described = append(described, strings.ToUpper(m)+" "+p)
			}
		}
	}
	slices.Sort(registered)
	slices.Sort(described)
	if !slices.Equal(registered, described) {
		t.Fatalf("routes registered:\n%s\nroutes in openapi.yaml:\n%s", strings.Join(registered, "\n"), strings.Join(described, "\n"))
	}
}
