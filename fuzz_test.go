package gatekit_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/examples/provider/app"
)

// FuzzDemoStack sends arbitrary bodies and headers through the demo's whole
// stack (auth, idempotency, rate limits, budgets with their body peeking,
// binding, validation, handlers): every answer is a success or a 4xx in the
// envelope, never a 5xx or a panic.
func FuzzDemoStack(f *testing.F) {
	for _, s := range []struct{ body, key, idem, ct string }{
		{`{"model":"gk-echo","messages":[{"role":"user","content":"hi"}]}`, "sk-demo-pro", "", "application/json"},
		{`{"model":"gk-echo","stream":true,"messages":[{"role":"user","content":"a b c"}],"max_tokens":2}`, "sk-demo-free", "k1", "application/json"},
		{`{"model":"gk-large","messages":[{"role":"user","content":"x"}]}`, "sk-demo-free", "", "application/json"},
		{`{"model":"gk-echo","messages":[{"role":"user","content":"x"}],"max_tokens":-1}`, "sk-demo-broke", "", "application/json"},
		{`{"messages":"nope","max_tokens":"1e400"}`, "sk-demo-pro", strings.Repeat("i", 300), "application/json; charset=utf-8"},
		{"\xff\xfe{", "Bearer", "k", "text/plain"},
		{`[]`, "", "", ""},
		{`{"model":"gk-flaky","stream":true,"messages":[{"role":"system","content":"s"}]}`, "sk-demo-pro", "k2", "application/json"},
	} {
		f.Add(s.body, s.key, s.idem, s.ct)
	}
	cfg := demoConfig(f)
	cfg.Logger = discardLogger()
	e, _, err := app.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, key, idem, ct string) {
		req := httptest.NewRequest(http.MethodPost, chatURL, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code >= 500 && !(rec.Code == 504 && strings.Contains(body, "gk-flaky")) {
			t.Fatalf("%d for body %q: %s", rec.Code, body, rec.Body)
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
			return
		}
		if rec.Code >= 400 {
			var env struct {
				Error struct {
					Message string `json:"message"`
					Code    string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error.Message == "" {
				t.Fatalf("%d is not an envelope: %s", rec.Code, rec.Body)
			}
			if _, ok := apierrors.Lookup(apierrors.Code(env.Error.Code)); !ok {
				t.Fatalf("code %q is not in the catalog", env.Error.Code)
			}
		}
	})
}
