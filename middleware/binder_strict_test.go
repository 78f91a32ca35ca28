package middleware_test

import (
	"net/http"
	"strings"
	"testing"

	apierrors "github.com/gatekit/gatekit/errors"
)

// maxBadRequestBody is the most bytes an answer to a bad request may take,
// whatever the request held.
const maxBadRequestBody = 4 << 10

func TestBinderMatchesFieldNamesExactly(t *testing.T) {
	for _, name := range []string{"MODEL", "Model", "meſſages"} {
		body := `{"` + name + `":"x","model":"m","messages":[{"role":"user"}]}`
		env := checkEnvelope(t, postChat(chatEcho(t), "application/json", body), http.StatusBadRequest, apierrors.CodeInvalidArgument)
		if env.Error.Param == nil || *env.Error.Param != name {
			t.Errorf("%s: param = %v, want %q", name, env.Error.Param, name)
		}
	}
}

func TestBinderRejectsDuplicateNames(t *testing.T) {
	tests := []struct{ body, param string }{
		{`{"model":"a","model":"b","messages":[{"role":"user"}]}`, "model"},
		{`{"model":"m","messages":[{"role":"user"},{"role":"user","role":"system"}]}`, "messages[1].role"},
	}
	for _, tt := range tests {
		env := checkEnvelope(t, postChat(chatEcho(t), "application/json", tt.body), http.StatusBadRequest, apierrors.CodeInvalidArgument)
		if env.Error.Param == nil || *env.Error.Param != tt.param {
			t.Errorf("%s: param = %v, want %q", tt.body, env.Error.Param, tt.param)
		}
		if !strings.Contains(env.Error.Message, "more than once") {
			t.Errorf("message = %q, want it to say the name came more than once", env.Error.Message)
		}
	}
}

func TestBinderRejectsInvalidUTF8(t *testing.T) {
	body := "{\"model\":\"m\xff\",\"messages\":[{\"role\":\"user\"}]}"
	env := checkEnvelope(t, postChat(chatEcho(t), "application/json", body), http.StatusBadRequest, apierrors.CodeInvalidRequest)
	if !strings.Contains(env.Error.Message, "UTF-8") {
		t.Errorf("message = %q, want it to name UTF-8", env.Error.Message)
	}
}

func TestBinderRejectsCharsetsOtherThanUTF8(t *testing.T) {
	for _, ct := range []string{"application/json; charset=latin1", "application/json; charset=utf-16", "application/json;charset=ISO-8859-1"} {
		env := checkEnvelope(t, postChat(chatEcho(t), ct, validChat), http.StatusUnsupportedMediaType, apierrors.CodeUnsupportedMediaType)
		if !strings.Contains(env.Error.Message, "UTF-8") {
			t.Errorf("%s: message = %q, want it to ask for UTF-8", ct, env.Error.Message)
		}
	}
	for _, ct := range []string{"application/json; charset=utf-8", "application/json; charset=\"UTF-8\"", "application/json;charset=utf8"} {
		if rec := postChat(chatEcho(t), ct, validChat); rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", ct, rec.Code, rec.Body)
		}
	}
}

func TestBinderNamesTheFieldWithItsIndicesForEveryErrorKind(t *testing.T) {
	tests := []struct {
		name, body, param, message string
	}{
		{"wrong type in an array element", `{"model":"m","messages":[{"role":"user"},{"role":5}]}`,
			"messages[1].role", "Invalid type for 'messages[1].role': expected a string, but got number instead."},
		{"unknown field in an array element", `{"model":"m","messages":[{"role":"user"},{"role":"user","extra":1}]}`,
			"messages[1].extra", "Unrecognized request argument supplied: messages[1].extra."},
		{"wrong type for the array", `{"model":"m","messages":{"role":"user"}}`,
			"messages", "Invalid type for 'messages': expected an array, but got object instead."},
		{"number out of range", `{"model":"m","messages":[{"role":"user"}],"temperature":1e400}`,
			"temperature", "Invalid type for 'temperature': expected a number, but got number 1e400 instead."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := checkEnvelope(t, postChat(chatEcho(t), "application/json", tt.body), http.StatusBadRequest, apierrors.CodeInvalidArgument)
			if env.Error.Param == nil || *env.Error.Param != tt.param {
				t.Errorf("param = %v, want %q", env.Error.Param, tt.param)
			}
			if env.Error.Message != tt.message {
				t.Errorf("message = %q\nwant      %q", env.Error.Message, tt.message)
			}
		})
	}
}

func TestBinderBoundsTheInputItQuotes(t *testing.T) {
	huge := strings.Repeat("x", 900<<10)
	digits := "1" + strings.Repeat("0", 500_000)
	bodies := map[string]string{
		"unknown field name":         `{"` + huge + `":1,"model":"m","messages":[{"role":"user"}]}`,
		"unknown nested field name":  `{"model":"m","messages":[{"role":"user","` + huge + `":1}]}`,
		"duplicate name":             `{"` + huge + `":1,"` + huge + `":1}`,
		"long integer":               `{"model":"m","messages":[{"role":"user"}],"max_tokens":` + digits + `}`,
		"long fraction":              `{"model":"m","messages":[{"role":"user"}],"max_tokens":0.` + digits + `}`,
		"long role":                  `{"model":"m","messages":[{"role":"` + huge + `"}]}`,
		"long value of a wrong type": `{"model":"` + huge[:600] + `","messages":"` + huge + `"}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			rec := postChat(chatEcho(t), "application/json", body)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d", rec.Code)
			}
			if rec.Body.Len() > maxBadRequestBody {
				t.Fatalf("a %d-byte answer to a bad request: %.300s...", rec.Body.Len(), rec.Body)
			}
			env := decodeEnvelope(t, rec.Body.Bytes())
			if strings.Contains(rec.Body.String(), "xxxxxxxxxx") && !strings.Contains(env.Error.Message+deref(env.Error.Param), apierrors.CutMark) {
				t.Errorf("quoted input is not marked as cut: %s", rec.Body)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
