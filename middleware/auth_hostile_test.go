package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

const goodKey = "sk-good-0123456789"

// authEcho is an Echo behind Auth (counting in metrics, logging to the
// returned buffer) with one key, goodKey, and a route answering 204.
func authEcho(t *testing.T) (*echo.Echo, *prometheus.Registry, *logBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics, err := middleware.NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := middleware.NewStaticKeys()
	if err := keys.Add(goodKey, &middleware.Principal{ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	logger, logs := newLogger()
	auth, err := middleware.AuthConfig{Keys: keys, Metrics: metrics, Logger: logger}.ToMiddleware()
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newEcho(t)
	e.Use(auth)
	e.GET("/v1/models", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	return e, reg, logs
}

func withAuthorization(v string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	if v != "" {
		req.Header.Set("Authorization", v)
	}
	return req
}

func TestAuthSaysWhenTheAuthorizationHeaderIsMalformed(t *testing.T) {
	e, _, _ := authEcho(t)
	for _, v := range []string{"Token " + goodKey, "Basic " + goodKey, goodKey, "Bearer", "Bearer   ", "Bearer\t"} {
		env := checkEnvelope(t, serve(e, withAuthorization(v)), http.StatusUnauthorized, apierrors.CodeMissingAPIKey)
		if strings.Contains(env.Error.Message, "didn't provide") || !strings.Contains(env.Error.Message, "Authorization header") {
			t.Errorf("%q: message %q, want one about the malformed header", v, env.Error.Message)
		}
		if strings.Contains(env.Error.Message, goodKey) {
			t.Errorf("%q: the message repeats the key: %q", v, env.Error.Message)
		}
	}
	env := checkEnvelope(t, serve(e, withAuthorization("")), http.StatusUnauthorized, apierrors.CodeMissingAPIKey)
	if !strings.Contains(env.Error.Message, "didn't provide") {
		t.Errorf("no header: message %q", env.Error.Message)
	}
}

func TestAuthTakesTheKeyAfterAnyBlankAndAnyCaseOfBearer(t *testing.T) {
	e, _, _ := authEcho(t)
	for _, v := range []string{"Bearer " + goodKey, "Bearer\t" + goodKey, "bearer  " + goodKey, "BEARER " + goodKey + " "} {
		if rec := serve(e, withAuthorization(v)); rec.Code != http.StatusNoContent {
			t.Errorf("%q: %d %s", v, rec.Code, rec.Body)
		}
	}
}

func TestAuthCountsFailuresByReasonAndLogsThemThrottledWithTheClient(t *testing.T) {
	e, reg, logs := authEcho(t)
	send := func(n int, v string) {
		for range n {
			req := withAuthorization(v)
			req.RemoteAddr = "192.0.2.7:4711"
			serve(e, req)
		}
	}
	send(30, "Bearer sk-guess-0123456789")
	send(2, "")
	send(3, "Token sk-guess-0123456789")
	send(1, "Bearer "+goodKey)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "gatekit_auth_failures_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	want := map[string]float64{"unknown_key": 30, "missing_key": 2, "malformed_header": 3}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("failures %q = %v, want %v (all: %v)", reason, got[reason], n, got)
		}
	}
	out := logs.String()
	if n := strings.Count(out, `"msg":"authentication failed"`); n < 1 || n > 3 {
		t.Errorf("%d log lines for 35 failures in a burst, want one a second:\n%s", n, out)
	}
	if !strings.Contains(out, "192.0.2.7") {
		t.Errorf("the log does not name the client:\n%s", out)
	}
	if strings.Contains(out, "sk-guess") || strings.Contains(out, goodKey) {
		t.Errorf("the log holds a key:\n%s", out)
	}
}

func TestAuthLogsTheConnectionsAddressNotForwardingHeaders(t *testing.T) {
	forged := strings.Repeat("203.0.113.66, ", 250) // 3.5 KB
	for _, tc := range []struct {
		name      string
		extractor echo.IPExtractor
		remote    string
		want      string
	}{
		// Without an IPExtractor, Echo would believe any client's headers.
		{"no IPExtractor", nil, "192.0.2.7:4711", `"client":"192.0.2.7"`},
		// An app that says which proxies it trusts gets what they forward.
		{"an IPExtractor trusting the proxy", echo.ExtractIPFromXFFHeader(), "10.0.0.1:4711", `"client":"198.51.100.4"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, logs := authEcho(t)
			e.IPExtractor = tc.extractor
			req := withAuthorization("Bearer sk-guess-0123456789")
			req.RemoteAddr = tc.remote
			req.Header.Set("X-Real-IP", forged)
			req.Header.Set("X-Forwarded-For", forged+"198.51.100.4")
			serve(e, req)
			out := logs.String()
			if !strings.Contains(out, tc.want) || strings.Contains(out, "203.0.113.66") {
				t.Fatalf("want %s and nothing forged in the log:\n%.600s", tc.want, out)
			}
		})
	}
	t.Run("an extractor's answer is cut", func(t *testing.T) {
		e, _, logs := authEcho(t)
		e.IPExtractor = func(r *http.Request) string { return r.Header.Get("X-Client") }
		req := withAuthorization("Bearer sk-guess-0123456789")
		req.Header.Set("X-Client", strings.Repeat("x", 3000))
		serve(e, req)
		out := logs.String()
		if !strings.Contains(out, apierrors.CutMark) || len(out) > 1500 {
			t.Fatalf("%d bytes logged, want the client cut at %d:\n%.600s", len(out), apierrors.MaxQuote, out)
		}
	})
}
