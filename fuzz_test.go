package gatekit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/examples/provider/app"
)

// maxErrorBody is the most bytes an error answer may take, whatever the
// request held.
const maxErrorBody = 8 << 10

// demoSeeds are FuzzDemoStack's seed corpus: the requests a client that
// means harm was seen to send (issue 15), then ordinary ones.
var demoSeeds = []struct{ method, path, body, auth, headers, ct string }{
	{"POST", chatURL, `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}]}`, "Bearer sk-demo-pro", "", "application/json"},
	{"POST", chatURL, `{"model":"gk-echo","stream":true,"messages":[{"role":"user","content":"a b c"}],"max_tokens":2}`, "Bearer sk-demo-free", "Idempotency-Key: k1", "application/json"},
	{"POST", chatURL, `{"model":"gk-large","messages":[{"role":"user","content":"x"}]}`, "Bearer sk-demo-free", "", "application/json"},
	{"POST", chatURL, `{"model":"gk-echo","messages":[{"role":"user","content":"x"}],"max_tokens":-1}`, "Bearer sk-demo-broke", "", "application/json"},
	{"POST", chatURL, `{"messages":"nope","max_tokens":"1e400"}`, "Bearer sk-demo-pro", "Idempotency-Key: " + strings.Repeat("i", 300), "application/json; charset=utf-8"},
	{"POST", chatURL, "\xff\xfe{", "Bearer", "", "text/plain"},
	{"POST", chatURL, `[]`, "", "", ""},
	{"POST", chatURL, `{"model":"gk-flaky","stream":true,"messages":[{"role":"system","content":"s"}]}`, "Bearer sk-demo-pro", "Idempotency-Key: k2", "application/json"},
	// Names matched in another case, or through Unicode folding.
	{"POST", chatURL, `{"MODEL":"gk-echo","messages":[{"role":"user","content":"hi"}]}`, "Bearer sk-demo-pro", "", "application/json"},
	{"POST", chatURL, `{"model":"gk-echo","meſſages":[{"role":"user","content":"hi"}]}`, "Bearer sk-demo-pro", "", "application/json"},
	// Duplicate names, invalid UTF-8, charsets other than UTF-8.
	{"POST", chatURL, `{"model":"gk-echo","model":"gk-large","messages":[{"role":"user","content":"hi"}]}`, "Bearer sk-demo-pro", "", "application/json"},
	{"POST", chatURL, "{\"model\":\"gk-echo\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}", "Bearer sk-demo-pro", "", "application/json"},
	{"POST", chatURL, `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}]}`, "Bearer sk-demo-pro", "", "application/json; charset=latin1"},
	{"POST", chatURL, "\xfe\xff\x00{", "Bearer sk-demo-pro", "", "application/json; charset=utf-16"},
	// Errors deep in arrays.
	{"POST", chatURL, `{"model":"gk-echo","messages":[{"role":"user","content":"hi"},{"role":5}]}`, "Bearer sk-demo-pro", "", "application/json"},
	{"POST", chatURL, `{"model":"gk-echo","messages":[{"role":"user","content":"hi"},{"role":"user","extra":1}]}`, "Bearer sk-demo-pro", "", "application/json"},
	// Input that an error would quote: a long name, a long number.
	{"POST", chatURL, `{"` + strings.Repeat("n", 20_000) + `":1}`, "Bearer sk-demo-pro", "", "application/json"},
	{"POST", chatURL, `{"model":"gk-echo","messages":[{"role":"user"}],"max_tokens":1` + strings.Repeat("0", 20_000) + `}`, "Bearer sk-demo-pro", "", "application/json"},
	{"GET", "/v1/models/" + strings.Repeat("m", 5000), "", "Bearer sk-demo-pro", "", ""},
	// Authorization headers that are not "Bearer KEY".
	{"GET", "/v1/models", "", "Token sk-demo-pro", "", ""},
	{"GET", "/v1/models", "", "Bearer\tsk-demo-pro", "", ""},
	{"GET", "/v1/models", "", "Basic c2stZGVtby1wcm86", "X-Api-Key: sk-demo-free", ""},
	// HEAD on GET routes, other methods, odd headers.
	{"HEAD", "/healthz", "", "", "", ""},
	{"HEAD", "/v1/models", "", "Bearer sk-demo-free", "", ""},
	{"HEAD", "/v1/key", "", "Bearer sk-demo-free", "", ""},
	{"DELETE", chatURL, "", "Bearer sk-demo-free", "", ""},
	{"OPTIONS", "/v1/models", "", "", "Origin: http://x\nAccess-Control-Request-Method: POST", ""},
	{"POST", "/v1/audio/transcriptions", "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b--\r\n", "Bearer sk-demo-pro", "", "multipart/form-data"},
	{"POST", "/v1/audio/transcriptions", "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b--\r\n", "Bearer sk-demo-pro", "", "multipart/form-data; boundary=b"},
	{"POST", chatURL, `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}]}`, "Bearer sk-demo-pro", "Content-Encoding: gzip\nX-Request-Id: " + strings.Repeat("r", 500) + "\nAccept: text/event-stream", "application/json"},
	// Anthropic's Messages API, answered in Anthropic's envelope.
	{"POST", "/v1/messages", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a b"}]}],"system":"s"}`, "", "X-Api-Key: sk-demo-free", "application/json"},
	{"POST", "/v1/messages", `{"model":"gk-flaky","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"a b c"}]}`, "", "X-Api-Key: sk-demo-pro", "application/json"},
	{"POST", "/v1/messages", `{"model":"gk-echo","max_tokens":99999,"messages":[{"role":"user","content":{"type":"text"}}]}`, "", "X-Api-Key: sk-demo-free", "application/json"},
	{"POST", "/v1/messages", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"x"},7]}]}`, "", "X-Api-Key: sk-demo-broke", "application/json"},
	{"POST", "/v1/messages", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, "", "", "application/json"},
}

// FuzzDemoStack sends arbitrary methods, paths, bodies and headers
// through the demo's whole stack (auth, idempotency, rate limits, budgets
// with their body peeking, binding, validation, handlers, HEAD): every
// answer is a success or a 4xx in the envelope, small, never a 5xx or a
// panic. headers holds extra "Name: value" lines.
func FuzzDemoStack(f *testing.F) {
	for _, s := range demoSeeds {
		f.Add(s.method, s.path, s.body, s.auth, s.headers, s.ct)
	}
	cfg := demoConfig(f)
	cfg.Logger = discardLogger()
	e, _, err := app.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, body, auth, headers, ct string) {
		req, err := http.NewRequest(method, "http://demo.test"+path, strings.NewReader(body))
		if err != nil || !strings.HasPrefix(path, "/") {
			return // net/http would not have parsed this request either
		}
		req.RequestURI = req.URL.RequestURI()
		req.RemoteAddr = "192.0.2.1:1234"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for line := range strings.Lines(headers) {
			if name, value, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":"); ok && name != "" {
				req.Header.Add(name, strings.TrimSpace(value))
			}
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if strings.Contains(body, "gk-slow") {
			return // a word every 200 ms, by design: tested on its own
		}
		// No request may hang: past the deadline its context ends, and
		// the input is reported rather than stalling the fuzzer.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req = req.WithContext(ctx)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if ctx.Err() != nil {
			t.Fatalf("%s %q body %.200q took over 5s", method, path, body)
		}
		flaky := rec.Code == http.StatusGatewayTimeout && strings.Contains(body, "gk-flaky")
		if rec.Code >= 500 && !flaky {
			t.Fatalf("%d for %s %q body %q: %s", rec.Code, method, path, body, rec.Body)
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
			return
		}
		if rec.Code >= 400 {
			if rec.Body.Len() > maxErrorBody {
				t.Fatalf("a %d-byte %d answer for %s %.100q", rec.Body.Len(), rec.Code, method, path)
			}
			if method == http.MethodHead {
				return
			}
			var env struct {
				Type  string `json:"type"`
				Error struct {
					Message string `json:"message"`
					Code    string `json:"code"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error.Message == "" {
				t.Fatalf("%d is not an envelope: %s", rec.Code, rec.Body)
			}
			if rid := rec.Header().Get("request-id"); rid != "" {
				// An Anthropic route: its envelope has a type, no code.
				if env.Type != "error" || env.Error.Type == "" || rid != rec.Header().Get("X-Request-Id") {
					t.Fatalf("%d is not Anthropic's envelope: %s", rec.Code, rec.Body)
				}
			} else if _, ok := apierrors.Lookup(apierrors.Code(env.Error.Code)); !ok {
				t.Fatalf("code %q is not in the catalog", env.Error.Code)
			}
			if rec.Header().Get("x-should-retry") == "" {
				t.Fatalf("%d without x-should-retry", rec.Code)
			}
		}
	})
}
