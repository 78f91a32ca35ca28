package errors_test

import (
	"context"
	"encoding/json"
	stderrors "errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	apierrors "github.com/gatekit/gatekit/errors"
)

func TestCatalogHasOneRowPerCodeWithAKnownStatus(t *testing.T) {
	seen := map[apierrors.Code]bool{}
	for _, s := range apierrors.Catalog() {
		if seen[s.Code] {
			t.Errorf("code %q appears twice", s.Code)
		}
		seen[s.Code] = true
		if http.StatusText(s.Status) == "" {
			t.Errorf("%s: status %d is not an HTTP status", s.Code, s.Status)
		}
		if s.Message == "" || !strings.HasSuffix(s.Message, ".") {
			t.Errorf("%s: default message %q is not a sentence", s.Code, s.Message)
		}
		got, ok := apierrors.Lookup(s.Code)
		if !ok || got != s {
			t.Errorf("Lookup(%q) = %+v, %v", s.Code, got, ok)
		}
	}
	if len(seen) != 32 {
		t.Errorf("catalog has %d codes, want 32", len(seen))
	}
}

func TestCatalogIsACopy(t *testing.T) {
	c := apierrors.Catalog()
	c[0].Status = 999
	if s, _ := apierrors.Lookup(c[0].Code); s.Status == 999 {
		t.Fatal("changing Catalog()'s result changed the catalog")
	}
}

func TestRetryableCodesMatchTheDesign(t *testing.T) {
	want := map[apierrors.Code]bool{
		apierrors.CodeIdempotencyConflict: true, apierrors.CodeRateLimitExceeded: true,
		apierrors.CodeTokensExceeded: true, apierrors.CodeConcurrencyExceeded: true, apierrors.CodeModelServerError: true,
		apierrors.CodeModelOverloaded: true, apierrors.CodeServiceUnavailable: true,
		apierrors.CodeModelTimeout: true, apierrors.CodeStreamError: true, apierrors.CodeStreamTerminated: true,
	}
	for _, s := range apierrors.Catalog() {
		if s.Retryable != want[s.Code] {
			t.Errorf("%s: retryable = %v, want %v", s.Code, s.Retryable, want[s.Code])
		}
	}
}

func TestUnknownCodeBecomesInternalError(t *testing.T) {
	e := apierrors.New("no_such_code", "x")
	if e.Code != apierrors.CodeInternalError || e.Status != 500 || e.Cause == nil {
		t.Fatalf("got %+v", e)
	}
}

func TestWithMethodsNeverMutateTheReceiver(t *testing.T) {
	base := apierrors.InvalidArgument("a", "m")
	_ = base.WithParam("b").WithMessage("n").WithRetryAfter(time.Second).WithCause(stderrors.New("c"))
	if base.Param != "a" || base.Message != "m" || base.RetryAfter != 0 || base.Cause != nil {
		t.Fatalf("receiver changed: %+v", base)
	}
}

func TestSecondsRoundUpNeverEarly(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		s  int64
		ms int64
	}{
		{0, 0, 0}, {-time.Second, 0, 0}, {time.Nanosecond, 1, 1}, {time.Second, 1, 1000},
		{time.Second + time.Nanosecond, 2, 1001}, {1500 * time.Millisecond, 2, 1500}, {59*time.Second + 999*time.Millisecond, 60, 59999},
	} {
		if got := apierrors.Seconds(tc.d); got != tc.s {
			t.Errorf("Seconds(%v) = %d, want %d", tc.d, got, tc.s)
		}
		if got := apierrors.Milliseconds(tc.d); got != tc.ms {
			t.Errorf("Milliseconds(%v) = %d, want %d", tc.d, got, tc.ms)
		}
	}
}

func TestFromMapsStandardErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code apierrors.Code
	}{
		{"ours, wrapped", fmt.Errorf("ctx: %w", apierrors.UnknownModel("m")), apierrors.CodeUnknownModel},
		{"max bytes", fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 10}), apierrors.CodePayloadTooLarge},
		{"syntax", json.Unmarshal([]byte("{"), new(any)), apierrors.CodeInvalidRequest},
		{"type", json.Unmarshal([]byte(`{"a":"x"}`), new(struct {
			A int `json:"a"`
		})), apierrors.CodeInvalidArgument},
		{"top-level type", json.Unmarshal([]byte(`[1]`), new(struct{ A int })), apierrors.CodeInvalidRequest},
		{"deadline", fmt.Errorf("upstream: %w", context.DeadlineExceeded), apierrors.CodeModelTimeout},
		{"canceled", context.Canceled, apierrors.CodeFailedRequest},
		{"other", stderrors.New("disk on fire"), apierrors.CodeInternalError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := apierrors.From(tc.err)
			if got.Code != tc.code {
				t.Fatalf("From(%v) = %s, want %s", tc.err, got.Code, tc.code)
			}
			if got.Status >= 500 && strings.Contains(got.Message, "disk") {
				t.Fatalf("5xx message leaks the cause: %q", got.Message)
			}
		})
	}
	if apierrors.From(nil) != nil {
		t.Fatal("From(nil) != nil")
	}
}

func TestEveryShapeRendersValidJSON(t *testing.T) {
	m := apierrors.Meta{RequestID: "req_1", Path: "/v1/x", Time: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)}
	for _, sh := range apierrors.Shapes() {
		for _, spec := range apierrors.Catalog() {
			e := apierrors.New(spec.Code, "bad \"quote\"\n\x00 \xff \u2028").WithParam("messages[0].role")
			body := sh.AppendBody(nil, e, m)
			var v map[string]any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("%s/%s: %v\n%s", sh, spec.Code, err, body)
			}
			ev := string(sh.AppendEvent(nil, e, m))
			if !strings.HasSuffix(ev, "\n\n") || !strings.Contains(ev, "data: ") {
				t.Fatalf("%s event = %q", sh, ev)
			}
		}
	}
}

func TestOpenAIShapeFields(t *testing.T) {
	e := apierrors.RateLimitExceeded("", 1500*time.Millisecond)
	body := apierrors.ShapeOpenAI.AppendBody(nil, e, apierrors.Meta{RequestID: "req_9"})
	want := `{"error":{"message":"Rate limit reached for requests.","type":"rate_limit_error","code":"rate_limit_exceeded","param":null,"request_id":"req_9","retry_after":2}}`
	if string(body) != want {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
	ev := apierrors.ShapeOpenAI.AppendEvent(nil, apierrors.ModelTimeout(""), apierrors.Meta{})
	if !strings.HasPrefix(string(ev), `data: {"error":{`) {
		t.Fatalf("event = %q", ev)
	}
	ev = apierrors.ShapeAnthropic.AppendEvent(nil, apierrors.ModelTimeout(""), apierrors.Meta{})
	if !strings.HasPrefix(string(ev), "event: error\ndata: {\"type\":\"error\"") {
		t.Fatalf("anthropic event = %q", ev)
	}
}

func TestShapesCarryTheirOwnFields(t *testing.T) {
	e := apierrors.PayloadTooLarge(1 << 20)
	m := apierrors.Meta{RequestID: "req_1", Path: "/p", Time: time.Unix(0, 0)}
	for _, tc := range []struct {
		shape apierrors.Shape
		keys  []string
	}{
		{apierrors.ShapeAnthropic, []string{"type", "error", "request_id"}},
		{apierrors.ShapeProblem, []string{"type", "title", "status", "detail", "code", "param", "request_id"}},
		{apierrors.ShapeFlat, []string{"error", "message"}},
		{apierrors.ShapeGateway, []string{"message", "path", "requestId", "statusCode", "timestamp"}},
	} {
		var v map[string]any
		if err := json.Unmarshal(tc.shape.AppendBody(nil, e, m), &v); err != nil {
			t.Fatal(err)
		}
		if len(v) != len(tc.keys) {
			t.Errorf("%s: keys %v, want %v", tc.shape, v, tc.keys)
		}
		for _, k := range tc.keys {
			if _, ok := v[k]; !ok {
				t.Errorf("%s: no %q in %v", tc.shape, k, v)
			}
		}
	}
	if ct := apierrors.ShapeProblem.ContentType(); ct != "application/problem+json" {
		t.Errorf("problem content type %q", ct)
	}
}

func TestParseShape(t *testing.T) {
	if s, err := apierrors.ParseShape(""); err != nil || s != apierrors.ShapeOpenAI {
		t.Fatal(s, err)
	}
	if _, err := apierrors.ParseShape("xml"); err == nil {
		t.Fatal("want error")
	}
}

func TestWriteSetsHeadersAndSkipsBodyForHEAD(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		apierrors.Write(rec, httptest.NewRequest(method, "/x", nil), apierrors.ShapeOpenAI, apierrors.ModelOverloaded(0), apierrors.Meta{RequestID: "req_2"})
		if rec.Code != 503 || rec.Header().Get("X-Should-Retry") != "true" || rec.Header().Get("Retry-After") != "1" ||
			rec.Header().Get("Retry-After-Ms") != "1000" || rec.Header().Get("X-Request-Id") != "req_2" {
			t.Fatalf("%s: %d %v", method, rec.Code, rec.Header())
		}
		if (method == http.MethodHead) != (rec.Body.Len() == 0) {
			t.Fatalf("%s: body %q", method, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	apierrors.Write(rec, httptest.NewRequest("GET", "/x", nil), apierrors.ShapeOpenAI, apierrors.InvalidRequest(""), apierrors.Meta{})
	if rec.Header().Get("X-Should-Retry") != "false" || rec.Header().Get("Retry-After") != "" {
		t.Fatalf("non-retryable headers %v", rec.Header())
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{1: "1 byte", 10: "10 bytes", 1536: "1536 bytes", 1 << 20: "1 MiB", 75_000_000: "75 MB", 2048: "2 KiB"} {
		if got := apierrors.FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzEnvelopeIsValidJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\", "\x00\x1f", "\xff\xfe", "\u2028\u2029", "日本語", "<script>"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, msg, param string) {
		e := apierrors.InvalidArgument(param, msg)
		for _, sh := range apierrors.Shapes() {
			body := sh.AppendBody(nil, e, apierrors.Meta{RequestID: param, Path: msg})
			var v map[string]any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("%s: %v: %q", sh, err, body)
			}
			if sh == apierrors.ShapeOpenAI {
				got := v["error"].(map[string]any)["message"].(string)
				if msg != "" && utf8.ValidString(msg) && got != msg {
					t.Fatalf("message %q came back as %q", msg, got)
				}
			}
		}
	})
}

func BenchmarkAppendBody(b *testing.B) {
	e := apierrors.RateLimitExceeded("Rate limit reached for requests on key k_1.", 2*time.Second)
	m := apierrors.Meta{RequestID: "req_0123456789abcdef", Path: "/v1/chat/completions"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = apierrors.ShapeOpenAI.AppendBody(buf[:0], e, m)
	}
}

func ExampleInvalidArgument() {
	e := apierrors.InvalidArgument("temperature", "Invalid 'temperature': decimal above maximum value.")
	fmt.Println(e.Status, e.Type, e.Retryable)
	fmt.Println(string(apierrors.ShapeOpenAI.AppendBody(nil, e, apierrors.Meta{RequestID: "req_1"})))
	// Output:
	// 400 invalid_request_error false
	// {"error":{"message":"Invalid 'temperature': decimal above maximum value.","type":"invalid_request_error","code":"invalid_argument","param":"temperature","request_id":"req_1"}}
}

func ExampleLookup() {
	s, _ := apierrors.Lookup(apierrors.CodeModelOverloaded)
	fmt.Println(s.Status, s.Type, s.Retryable)
	// Output: 503 engine_error true
}

func TestExpiredAPIKeySaysWhenTheKeyExpired(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	e := apierrors.ExpiredAPIKey(at)
	if e.Status != http.StatusUnauthorized || e.Code != apierrors.CodeExpiredAPIKey || e.Type != apierrors.TypeAuthentication || e.Retryable {
		t.Fatalf("%+v", e)
	}
	if !strings.Contains(e.Message, "2026-03-01T11:00:00Z") {
		t.Fatalf("message %q does not give the expiry in UTC", e.Message)
	}
}
