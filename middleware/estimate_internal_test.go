package middleware

import (
	"encoding/json"
	"math"
	"testing"
)

func TestChatScanReadsTheFieldsItNeeds(t *testing.T) {
	for _, tc := range []struct {
		body   string
		ok     bool
		model  string
		input  int
		maxOut int64
	}{
		{`{"model":"gpt","max_tokens":12,"messages":[{"role":"user","content":"hi"}]}`, true, "gpt", len(`[{"role":"user","content":"hi"}]`), 12},
		{` { "messages" : [1,[2,{"a":"]}"}]] , "model":"m\u0041" , "max_completion_tokens":7 } `, true, "", len(`[1,[2,{"a":"]}"}]]`), 7},
		{`{"system":"be brief","prompt":"x","input":["y"],"max_output_tokens":3}`, true, "", len(`"be brief"`) + 3 + 5, 3},
		{`{"max_tokens":99999999999999999999999}`, true, "", 0, math.MaxInt64},
		{`{"max_tokens":-5}`, true, "", 0, 0},
		{`{"max_tokens":1.5}`, true, "", 0, 0},
		{`{"MESSAGES":"abc","stream":true,"m\u0065ssages":[]}`, true, "", 5 + 4 + 2, 0},
		{`{"max_tokens":5,"max_tokens":9}`, true, "", 0, 9},
		{`{}`, true, "", 0, 0},
		{`[]`, false, "", 0, 0},
		{`{"model":"m"`, false, "", 0, 0},
		{`{"messages":[}`, false, "", 0, 0},
		{`{"a":1}x`, false, "", 0, 0},
	} {
		var sc chatScan
		ok := sc.scan([]byte(tc.body))
		if ok != tc.ok || (ok && (string(sc.model) != tc.model || sc.input != tc.input || sc.maxOut != tc.maxOut)) {
			t.Errorf("%s: ok %v model %q input %d max %d; want %v %q %d %d", tc.body, ok, sc.model, sc.input, sc.maxOut, tc.ok, tc.model, tc.input, tc.maxOut)
		}
	}
}

// FuzzChatScanNeverUnderestimates: whatever the body, the scan never
// panics, and for every body encoding/json reads as an object, the scan
// either reads it too, finding at least the input and max_tokens that
// encoding/json finds, or gives up (and the estimate counts the whole
// body).
func FuzzChatScanNeverUnderestimates(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt","max_tokens":12,"messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":"\"}","prompt":[{"x":"\\"}]}`,
		`{"input":[1,2,3],"max_output_tokens":1e3}`,
		`{"MAX_TOKENS":5,"max_tokens":0}`,
		` {"system" : null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var sc chatScan
		ok := sc.scan(body)
		var fields map[string]json.RawMessage
		if json.Unmarshal(body, &fields) != nil {
			return
		}
		if !ok {
			return // the whole body is counted: never less
		}
		input := 0
		for k, v := range fields {
			if k != "model" && k != "max_tokens" && k != "max_completion_tokens" && k != "max_output_tokens" {
				input += len(v)
			}
		}
		if sc.input < input {
			t.Fatalf("%q: input %d, encoding/json finds %d", body, sc.input, input)
		}
		for _, k := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
			var n int64
			if json.Unmarshal(fields[k], &n) == nil && n > sc.maxOut {
				t.Fatalf("%q: max %d, encoding/json finds %s = %d", body, sc.maxOut, k, n)
			}
		}
	})
}
