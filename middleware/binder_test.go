package middleware_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// chatEcho is an Echo whose POST /v1/chat/completions binds a ChatRequest
// and echoes it back as JSON.
func chatEcho(t *testing.T) *echo.Echo {
	t.Helper()
	e, _ := newEcho(t)
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		var req ChatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, req)
	})
	return e
}

func postChat(e *echo.Echo, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set(echo.HeaderContentType, contentType)
	}
	return serve(e, req)
}

func TestBinderBindsAndValidatesAWellFormedBody(t *testing.T) {
	e := chatEcho(t)
	body := `{"model":"gpt-test","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"temperature":0.5,"max_tokens":16,"stream":true}`
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.x+json"} {
		rec := postChat(e, ct, "\n "+body+" \n\t")
		if rec.Code != http.StatusOK {
			t.Fatalf("Content-Type %q: status %d: %s", ct, rec.Code, rec.Body)
		}
		var got, want ChatRequest
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal([]byte(body), &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("bound %+v, want %+v", got, want)
		}
	}
}

func TestBinderRejectsBadBodiesWithTheEnvelope(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        apierrors.Code
		param       string // "" wants null
		message     string // exact, unless prefix is set
		prefix      bool
	}{
		{"unknown field", "application/json", `{"model":"m","messages":[{"role":"user"}],"temprature":1}`,
			400, apierrors.CodeInvalidArgument, "temprature", "Unrecognized request argument supplied: temprature.", false},
		{"trailing object", "application/json", validChat + ` {}`,
			400, apierrors.CodeInvalidRequest, "", "We could not parse the JSON body of your request: unexpected data after the JSON value (at byte 66).", false},
		{"trailing garbage", "application/json", validChat + `x`,
			400, apierrors.CodeInvalidRequest, "", "We could not parse the JSON body of your request: unexpected data after the JSON value (at byte 65).", false},
		{"trailing close bracket", "application/json", validChat + "\n]",
			400, apierrors.CodeInvalidRequest, "", "We could not parse the JSON body of your request: unexpected data after the JSON value (at byte 66).", false},
		{"trailing open string", "application/json", validChat + `"abc`,
			400, apierrors.CodeInvalidRequest, "", "We could not parse the JSON body of your request: unexpected data after the JSON value (at byte 65).", false},
		{"malformed", "application/json", `{"model":"m",,}`,
			400, apierrors.CodeInvalidRequest, "", "We could not parse the JSON body of your request: invalid character ',' at start of value (at byte 14).", false},
		{"truncated", "application/json", `{"model":"m","messages":[{"role":"us`,
			400, apierrors.CodeInvalidRequest, "", "We could not parse the JSON body of your request: it ended unexpectedly (at byte 36).", false},
		{"empty", "application/json", ``,
			400, apierrors.CodeInvalidRequest, "", "The request body is empty; expected a JSON object.", false},
		{"only white space", "application/json", " \n\t ",
			400, apierrors.CodeInvalidRequest, "", "The request body is empty; expected a JSON object.", false},
		{"wrong type", "application/json", `{"model":"m","messages":[{"role":"user"}],"temperature":"hot"}`,
			400, apierrors.CodeInvalidArgument, "temperature", "Invalid type for 'temperature': expected a number, but got string instead.", false},
		{"wrong type for an integer", "application/json", `{"model":"m","messages":[{"role":"user"}],"max_tokens":1.5}`,
			400, apierrors.CodeInvalidArgument, "max_tokens", "Invalid type for 'max_tokens': expected an integer, but got number 1.5 instead.", false},
		{"top-level array", "application/json", `[` + validChat + `]`,
			400, apierrors.CodeInvalidRequest, "", "The request body must be an object, but got array instead.", false},
		{"top-level string", "application/json", `"hello"`,
			400, apierrors.CodeInvalidRequest, "", "The request body must be an object, but got string instead.", false},
		{"no Content-Type", "", validChat,
			415, apierrors.CodeUnsupportedMediaType, "", "The request has no Content-Type; expected 'application/json'.", false},
		{"text/plain", "text/plain", validChat,
			415, apierrors.CodeUnsupportedMediaType, "", "Unsupported Content-Type 'text/plain'; expected 'application/json'.", false},
		{"form", "application/x-www-form-urlencoded", "model=m",
			415, apierrors.CodeUnsupportedMediaType, "", "Unsupported Content-Type 'application/x-www-form-urlencoded'; expected 'application/json'.", false},
		{"json lookalike", "application/jsonx", validChat,
			415, apierrors.CodeUnsupportedMediaType, "", "Unsupported Content-Type 'application/jsonx'; expected 'application/json'.", false},
		{"temperature above maximum", "application/json", `{"model":"m","messages":[{"role":"user"}],"temperature":3}`,
			400, apierrors.CodeInvalidArgument, "temperature", "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.", false},
		{"temperature below minimum", "application/json", `{"model":"m","messages":[{"role":"user"}],"temperature":-0.5}`,
			400, apierrors.CodeInvalidArgument, "temperature", "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -0.5 instead.", false},
		{"role outside the enum", "application/json", `{"model":"m","messages":[{"role":"user"},{"role":"robot"}]}`,
			400, apierrors.CodeInvalidArgument, "messages[1].role", "Invalid value for 'messages[1].role': 'robot'. Supported values are: 'system', 'user', and 'assistant'.", false},
		{"missing role", "application/json", `{"model":"m","messages":[{"content":"hi"}]}`,
			400, apierrors.CodeInvalidArgument, "messages[0].role", "Missing required parameter: 'messages[0].role'.", false},
		{"empty messages", "application/json", `{"model":"m","messages":[]}`,
			400, apierrors.CodeInvalidArgument, "messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", false},
		{"missing messages", "application/json", `{"model":"m"}`,
			400, apierrors.CodeInvalidArgument, "messages", "Missing required parameter: 'messages'.", false},
		{"missing model", "application/json", `{"messages":[{"role":"user"}]}`,
			400, apierrors.CodeInvalidArgument, "model", "Missing required parameter: 'model'.", false},
		{"max_tokens zero", "application/json", `{"model":"m","messages":[{"role":"user"}],"max_tokens":0}`,
			400, apierrors.CodeInvalidArgument, "max_tokens", "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := postChat(chatEcho(t), tt.contentType, tt.body)
			env := checkEnvelope(t, rec, tt.status, tt.code)
			switch {
			case tt.param == "" && env.Error.Param != nil:
				t.Errorf("param = %q, want null", *env.Error.Param)
			case tt.param != "" && (env.Error.Param == nil || *env.Error.Param != tt.param):
				t.Errorf("param = %v, want %q", env.Error.Param, tt.param)
			}
			if env.Error.Message != tt.message {
				t.Errorf("message = %q\nwant      %q", env.Error.Message, tt.message)
			}
		})
	}
}

func TestValidatorNamesPointerFieldsByValueNotAddress(t *testing.T) {
	temp, max := 2.5, -3
	err := middleware.NewValidator().Validate(&ChatRequest{
		Model: "m", Messages: []ChatMessage{{Role: "user"}}, Temperature: &temp,
	})
	if e, ok := apierrors.As(err); !ok || !strings.HasSuffix(e.Message, "but got 2.5 instead.") {
		t.Errorf("temperature: %v", err)
	}
	err = middleware.NewValidator().Validate(&ChatRequest{
		Model: "m", Messages: []ChatMessage{{Role: "user"}}, MaxTokens: &max,
	})
	if e, ok := apierrors.As(err); !ok || !strings.HasSuffix(e.Message, "but got -3 instead.") {
		t.Errorf("max_tokens: %v", err)
	}
}

func TestValidatorWordsLengthRulesByKind(t *testing.T) {
	type limits struct {
		Name  string            `json:"name" validate:"max=3"`
		Code  string            `json:"code" validate:"omitempty,len=2"`
		Tags  []string          `json:"tags" validate:"max=1"`
		Meta  map[string]string `json:"metadata" validate:"omitempty,min=2"`
		Stop  *[]string         `json:"stop" validate:"omitempty,max=1"`
		Label *string           `json:"label" validate:"omitempty,min=2"`
		Count int               `json:"n" validate:"lt=10"`
	}
	one := "x"
	tests := []struct {
		value limits
		param string
		want  string
	}{
		{limits{Name: "héllo"}, "name", "Invalid 'name': string too long. Expected a string with maximum length 3, but got a string with length 5 instead."},
		{limits{Code: "abc"}, "code", "Invalid 'code': expected a string of length 2, but got a string with length 3 instead."},
		{limits{Tags: []string{"a", "b"}}, "tags", "Invalid 'tags': array too long. Expected an array with maximum length 1, but got an array with length 2 instead."},
		{limits{Meta: map[string]string{"a": "b"}}, "metadata", "Invalid 'metadata': object too short. Expected an object with minimum length 2, but got an object with length 1 instead."},
		{limits{Stop: &[]string{"a", "b"}}, "stop", "Invalid 'stop': array too long. Expected an array with maximum length 1, but got an array with length 2 instead."},
		{limits{Label: &one}, "label", "Invalid 'label': string too short. Expected a string with minimum length 2, but got a string with length 1 instead."},
		{limits{Count: 12}, "n", "Invalid 'n': integer above maximum value. Expected a value < 10, but got 12 instead."},
	}
	v := middleware.NewValidator()
	for _, tt := range tests {
		e, ok := apierrors.As(v.Validate(&tt.value))
		if !ok {
			t.Errorf("%s: no *apierrors.Error", tt.param)
			continue
		}
		if e.Code != apierrors.CodeInvalidArgument || e.Param != tt.param || e.Message != tt.want {
			t.Errorf("got %s %q %q\nwant invalid_argument %q %q", e.Code, e.Param, e.Message, tt.param, tt.want)
		}
	}
}

func TestValidatorNamesFieldsOfAnAnonymousRootStruct(t *testing.T) {
	v := middleware.NewValidator()
	err := v.Validate(&struct {
		Messages []ChatMessage `json:"messages" validate:"dive"`
	}{Messages: []ChatMessage{{Role: "user"}, {Role: ""}}})
	if e, ok := apierrors.As(err); !ok || e.Param != "messages[1].role" {
		t.Errorf("got %v, want param messages[1].role", err)
	}
}

func TestValidatorLetsNonStructsAndValidStructsPass(t *testing.T) {
	v := middleware.NewValidator()
	for _, x := range []any{nil, 3, "s", &[]int{1}, map[string]int{}, &ChatRequest{Model: "m", Messages: []ChatMessage{{Role: "user"}}}} {
		if err := v.Validate(x); err != nil {
			t.Errorf("Validate(%#v) = %v", x, err)
		}
	}
}

func TestBinderSkipValidationLeavesValidationToTheHandler(t *testing.T) {
	e, _ := newEcho(t)
	e.Binder = &middleware.Binder{SkipValidation: true}
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		var req ChatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		if req.Model != "" {
			t.Errorf("model = %q", req.Model)
		}
		return c.Validate(&req)
	})
	env := checkEnvelope(t, postChat(e, "application/json", `{"messages":[]}`), http.StatusBadRequest, apierrors.CodeInvalidArgument)
	if *env.Error.Param != "model" {
		t.Errorf("param = %q, want model", *env.Error.Param)
	}
}

func TestBinderBindsPathAndQueryParametersOfAGET(t *testing.T) {
	type listMessages struct {
		ThreadID string `param:"thread_id" validate:"required,startswith=thread_"`
		Limit    int    `query:"limit" validate:"omitempty,gte=1,lte=100"`
		Order    string `query:"order" validate:"omitempty,oneof=asc desc"`
	}
	e, _ := newEcho(t)
	e.GET("/v1/threads/:thread_id/messages", func(c echo.Context) error {
		var req listMessages
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, req)
	})

	rec := serve(e, httptest.NewRequest(http.MethodGet, "/v1/threads/thread_42/messages?limit=20&order=desc&unrelated=1", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got listMessages
	_ = json.Unmarshal(rec.Body.Bytes(), &got)
	if want := (listMessages{ThreadID: "thread_42", Limit: 20, Order: "desc"}); got != want {
		t.Errorf("bound %+v, want %+v", got, want)
	}

	rec = serve(e, httptest.NewRequest(http.MethodGet, "/v1/threads/thread_42/messages?limit=many", nil))
	env := checkEnvelope(t, rec, http.StatusBadRequest, apierrors.CodeInvalidRequest)
	if !strings.HasPrefix(env.Error.Message, "Invalid query parameter: ") {
		t.Errorf("message = %q", env.Error.Message)
	}

	rec = serve(e, httptest.NewRequest(http.MethodGet, "/v1/threads/thread_42/messages?limit=500", nil))
	env = checkEnvelope(t, rec, http.StatusBadRequest, apierrors.CodeInvalidArgument)
	if *env.Error.Param != "Limit" {
		t.Errorf("param = %q, want the field name (no json tag)", *env.Error.Param)
	}

	rec = serve(e, httptest.NewRequest(http.MethodGet, "/v1/threads/t42/messages", nil))
	checkEnvelope(t, rec, http.StatusBadRequest, apierrors.CodeInvalidArgument)
}

func TestBinderBindsPathParametersAndTheBodyOfAPOST(t *testing.T) {
	type addMessage struct {
		ThreadID string `param:"thread_id" json:"-"`
		Role     string `json:"role" validate:"required"`
		Content  string `json:"content"`
	}
	e, _ := newEcho(t)
	e.POST("/v1/threads/:thread_id/messages", func(c echo.Context) error {
		var req addMessage
		if err := c.Bind(&req); err != nil {
			return err
		}
		if req.ThreadID != "thread_7" || req.Role != "user" || req.Content != "hi" {
			t.Errorf("bound %+v", req)
		}
		return c.NoContent(http.StatusCreated)
	})
	rec := serve(e, postJSON("/v1/threads/thread_7/messages", `{"role":"user","content":"hi"}`))
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

func TestBinderReportsANonPointerTargetAsAServerFault(t *testing.T) {
	e, _ := newEcho(t)
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		var req ChatRequest
		return c.Bind(req)
	})
	checkEnvelope(t, postChat(e, "application/json", validChat), http.StatusInternalServerError, apierrors.CodeInternalError)
}

func TestIsJSONAcceptsJSONAndPlusJSONTypesOnly(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json":                 true,
		"application/json;charset=UTF-8":   true,
		" APPLICATION/JSON ; charset=utf8": true,
		"application/problem+json":         true,
		"application/vnd.api+json; v=2":    true,
		"":                                 false,
		"text/json":                        false,
		"text/plain":                       false,
		"application/jsonp":                false,
		"application/x-ndjson":             false,
		"+json":                            false,
	} {
		if got := middleware.IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}
