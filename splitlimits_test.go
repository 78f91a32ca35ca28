package gatekit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

const messagesURL = "/v1/messages"

// splitProvider serves the demo with the free tier on input and output
// token limits of its own on both protocols' routes, a prompt estimate of
// its words plus 10, and every settlement kept.
func splitProvider(t *testing.T, clock *fakeClock, lc gatekit.LimitConfig) (srv string, settled func() []middleware.Settlement) {
	t.Helper()
	var mu sync.Mutex
	var got []middleware.Settlement
	s := newLimitedProvider(t, clock, func(c *gatekit.Config) {
		c.Tiers["free"] = gatekit.TierConfig{Models: []string{"gk-echo"}, Routes: map[string]gatekit.LimitConfig{
			"POST /v1/messages": lc, "POST /v1/chat/completions": lc,
		}}
		c.CountTokens = func(b []byte) int64 { return int64(len(strings.Fields(string(b)))) + 10 }
		c.OnSettle = func(_ context.Context, s middleware.Settlement) {
			mu.Lock()
			got = append(got, s)
			mu.Unlock()
		}
	})
	return s.URL, func() []middleware.Settlement {
		mu.Lock()
		defer mu.Unlock()
		return append([]middleware.Settlement(nil), got...)
	}
}

// postMessage sends an Anthropic message with one user turn.
func postMessage(t *testing.T, url, key, text string, maxTokens int) *http.Response {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"model": "gk-echo", "max_tokens": maxTokens,
		"messages": []map[string]any{{"role": "user", "content": text}}})
	req, _ := http.NewRequest(http.MethodPost, url+messagesURL, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The input bucket takes the prompt estimate and the output bucket the
// allowance, each given back at settle for what the reported prompt and
// completion tokens did not use.
func TestSplitTokenLimitsReserveInputAndOutputApartAndRefundEach(t *testing.T) {
	url, settled := splitProvider(t, newFakeClock(), gatekit.LimitConfig{ITPM: 1000, OTPM: 100})
	// "one two three": 3 words, estimated 13 input tokens; it uses 3 in
	// and 3 out of an allowance of 40.
	res := postMessage(t, url, "sk-demo-free", "one two three", 40)
	readAll(t, res)
	if res.StatusCode != 200 || res.Header.Get("anthropic-ratelimit-input-tokens-remaining") != "987" ||
		res.Header.Get("anthropic-ratelimit-output-tokens-remaining") != "60" {
		t.Fatalf("first: %d %v", res.StatusCode, res.Header)
	}
	// Settled to 3 and 3: the next sees 997 and 97 before its own claims.
	res = postMessage(t, url, "sk-demo-free", "one two three", 40)
	readAll(t, res)
	if res.Header.Get("anthropic-ratelimit-input-tokens-remaining") != "984" ||
		res.Header.Get("anthropic-ratelimit-output-tokens-remaining") != "57" {
		t.Fatalf("second: %v", res.Header)
	}
	s := settled()
	if len(s) != 2 || s[0].ReservedTokens != 13+40 || s[0].ChargedTokens != 6 || s[0].ExcessTokens != 0 || s[0].Allowance != 40 {
		t.Fatalf("settlements %+v", s)
	}
}

// Never-fit rules as for a combined limit: a prompt above the input burst
// and a max_tokens above the output burst are refused as not retryable;
// a request that fits later is refused as retryable, with Anthropic's
// headers and retry-after.
func TestSplitTokenLimitsRefuseWhatCanNeverFitAndHintWhatFitsLater(t *testing.T) {
	clock := newFakeClock()
	url, _ := splitProvider(t, clock, gatekit.LimitConfig{ITPM: 100, OTPM: 60})
	for _, tc := range []struct {
		text      string
		maxTokens int
		says      string
	}{
		{strings.TrimSpace(strings.Repeat("w ", 91)), 10, "on input tokens: limit 100 per minute, at most 100 at once; the prompt alone is about 101 tokens"},
		{"hi", 61, "on output tokens: limit 60 per minute, at most 60 at once; max_tokens is 61"},
	} {
		res := postMessage(t, url, "sk-demo-free", tc.text, tc.maxTokens)
		var body struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal([]byte(readAll(t, res)), &body); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 429 || body.Error.Type != "rate_limit_error" || !strings.Contains(body.Error.Message, tc.says) ||
			res.Header.Get("X-Should-Retry") != "false" || res.Header.Get("Retry-After") != "" {
			t.Fatalf("%d %v %+v", res.StatusCode, res.Header, body)
		}
	}
	// An answer of 50 words uses 50 of the 60 output tokens; 20 more do
	// not fit the 10 left, and the bucket refills one a second: 10 s.
	readAll(t, postMessage(t, url, "sk-demo-free", strings.TrimSpace(strings.Repeat("w ", 50)), 50))
	res := postMessage(t, url, "sk-demo-free", "hi", 20)
	readAll(t, res)
	if res.StatusCode != 429 || res.Header.Get("X-Should-Retry") != "true" || res.Header.Get("Retry-After") != "10" ||
		res.Header.Get("anthropic-ratelimit-output-tokens-remaining") != "10" || res.Header.Get("request-id") == "" {
		t.Fatalf("%d %v", res.StatusCode, res.Header)
	}
	clock.Advance(10 * time.Second)
	res = postMessage(t, url, "sk-demo-free", "hi", 20)
	readAll(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("after the wait: %d", res.StatusCode)
	}
}

// Without max_tokens the default allowance is capped by the output burst
// and lowered to the room the output bucket has; the demo stops there.
func TestSplitTokenLimitsCapTheDefaultAllowanceByTheOutputBucket(t *testing.T) {
	url, _ := splitProvider(t, newFakeClock(), gatekit.LimitConfig{ITPM: 10000, OTPM: 30})
	words := strings.TrimSpace(strings.Repeat("w ", 50))
	for _, want := range []int{30, 0} {
		res := chatWith(t, withKey("sk-demo-free"), url, "gk-echo", words, 0)
		if want == 0 {
			// All 30 were used: nothing is left to shrink to.
			env := checkEnvelope(t, res, apierrors.CodeTokensExceeded)
			if !strings.Contains(env.Error.Message, "output tokens") {
				t.Fatalf("message %q", env.Error.Message)
			}
			continue
		}
		var out struct {
			Choices []struct {
				Message      struct{ Content string }
				FinishReason string `json:"finish_reason"`
			}
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if n := len(strings.Fields(out.Choices[0].Message.Content)); n != want || out.Choices[0].FinishReason != "length" {
			t.Fatalf("%d words, finish %q; want %d and length", n, out.Choices[0].FinishReason, want)
		}
	}
}

// GET /v1/key?route=messages shows the split limits as they stand.
func TestKeyStatusReportsSplitTokenLimits(t *testing.T) {
	url, _ := splitProvider(t, newFakeClock(), gatekit.LimitConfig{RPM: 10, ITPM: 1000, OTPM: 100})
	readAll(t, postMessage(t, url, "sk-demo-free", "one two three", 40))
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/key?route=messages", nil)
	res, err := withKey("sk-demo-free").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st gatekit.KeyStatus
	if err := json.Unmarshal([]byte(readAll(t, res)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Route != "POST /v1/messages" || st.Requests.Remaining != 9 || st.Tokens != nil ||
		st.InputTokens == nil || st.InputTokens.Remaining != 997 || st.OutputTokens == nil || st.OutputTokens.Remaining != 97 {
		t.Fatalf("%+v %+v %+v", st, st.InputTokens, st.OutputTokens)
	}
	req, _ = http.NewRequest(http.MethodGet, url+"/v1/key?route=nope", nil)
	res, _ = withKey("sk-demo-free").Do(req)
	checkEnvelope(t, res, apierrors.CodeInvalidArgument)
}
