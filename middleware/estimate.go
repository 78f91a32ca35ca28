package middleware

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
)

// Estimate is what a request asks for, read before its handler runs.
type Estimate struct {
	// Model is the model asked for.
	Model string
	// PromptTokens is the most tokens its input can count as.
	PromptTokens int64
	// MaxOutputTokens is the completion length it asked for at most
	// (max_tokens); 0 when it set none.
	MaxOutputTokens int64
}

// ChatEstimator reads OpenAI- and Anthropic-style request bodies (chat
// completions, completions, responses, embeddings, messages): the model,
// max_tokens, max_completion_tokens or max_output_tokens, and as input
// every other top-level field (messages, system, prompt, input, tools...).
// Its Estimate fits [AdmissionConfig].
//
// An estimator keeps the model names it has seen (up to maxModelNames), so
// that reading a known name allocates nothing; it must not be copied after
// first use.
type ChatEstimator struct {
	// CountTokens counts a prompt's tokens. It must not count fewer than
	// the model will. Default: one token per byte of the request's JSON
	// input, an upper bound for byte-level tokenizers.
	CountTokens func(input []byte) int64

	mu     sync.RWMutex
	models map[string]string
}

// maxModelNames bounds the model names a ChatEstimator keeps.
const maxModelNames = 1024

// modelName returns b as a string: the one kept for it when b was seen
// before.
func (ce *ChatEstimator) modelName(b []byte) string {
	ce.mu.RLock()
	s, ok := ce.models[string(b)]
	ce.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if ce.models == nil {
		ce.models = map[string]string{}
	}
	if len(ce.models) < maxModelNames {
		ce.models[s] = s
	}
	return s
}

// Estimate reads c's body. A body it cannot read as a JSON object is
// estimated as all input, an upper bound; the binder rejects it after.
func (ce *ChatEstimator) Estimate(c echo.Context) (Estimate, error) {
	raw, err := PeekBody(c)
	if err != nil {
		return Estimate{}, err
	}
	sc := chatScan{keep: ce.CountTokens != nil}
	if !sc.scan(raw) {
		sc = chatScan{inputs: [][]byte{raw}, input: len(raw)}
	}
	est := Estimate{PromptTokens: int64(sc.input), MaxOutputTokens: sc.maxOut}
	if sc.model != nil {
		est.Model = ce.modelName(sc.model)
	}
	if ce.CountTokens != nil {
		joined := make([]byte, 0, sc.input)
		for _, in := range sc.inputs {
			joined = append(joined, in...)
		}
		est.PromptTokens = ce.CountTokens(joined)
	}
	return est, nil
}

// chatScan is what the estimate reads of a body, found without decoding
// it: a scan of its top-level object that copies nothing but the model.
type chatScan struct {
	model  []byte
	input  int      // bytes of the input fields' values
	inputs [][]byte // those values, with keep
	keep   bool     // keep the input values, for CountTokens
	maxOut int64
}

// scan reads raw's top-level fields, and reports false for anything that
// is not one JSON object. Input fields that appear twice count twice, and
// the largest max_tokens wins: an estimate must not be low.
func (sc *chatScan) scan(raw []byte) bool {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return skipSpace(raw, i+1) == len(raw)
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return false
		}
		kend, ok := skipString(raw, i)
		if !ok {
			return false
		}
		key := raw[i+1 : kend-1]
		i = skipSpace(raw, kend)
		if i >= len(raw) || raw[i] != ':' {
			return false
		}
		v := skipSpace(raw, i+1)
		end, ok := skipValue(raw, v)
		if !ok {
			return false
		}
		sc.field(key, raw[v:end])
		i = skipSpace(raw, end)
		if i >= len(raw) {
			return false
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return skipSpace(raw, i+1) == len(raw)
		default:
			return false
		}
	}
}

// field takes in one top-level field. Every field but the model and the
// output limits counts as input (messages, system, prompt, input, and
// tools and the like, which models read too), whatever its key's spelling:
// a decoder that matches keys loosely must not find input that was not
// counted.
func (sc *chatScan) field(key, value []byte) {
	switch string(key) {
	case "model":
		if len(value) >= 2 && value[0] == '"' && bytes.IndexByte(value, '\\') < 0 {
			sc.model = value[1 : len(value)-1]
		}
	case "max_tokens", "max_completion_tokens", "max_output_tokens":
		if n, ok := parseCount(value); ok {
			sc.maxOut = max(sc.maxOut, n)
		}
	default:
		sc.input += len(value)
		if sc.keep {
			sc.inputs = append(sc.inputs, value)
		}
	}
}

// parseCount reads a JSON number that is a positive whole count, as
// max_tokens is; one too large for an int64 reads as math.MaxInt64, more
// than any limit. Anything else (negative, a fraction, an exponent, not a
// number) is not a count: the binder rejects it.
func parseCount(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	return n, n > 0
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i]
// ('"').
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index just past the JSON value starting at b[i]:
// strings and nesting are followed exactly, scalars up to the next
// delimiter (the binder checks them).
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j, j > i
}

// peekedBody is a body read whole by PeekBody, put back for the handler.
type peekedBody struct{ bytes.Reader }

// Close implements io.Closer; there is nothing to close.
func (*peekedBody) Close() error { return nil }

// PeekBody reads the whole request body (within the route's body limit)
// and puts it back, so that middleware can look at a body the handler will
// bind again. A body over the limit is 413 payload_too_large; a body that
// cannot be read whole (too slow, cut off) is 400 invalid_request. Either
// failure closes the connection after the response, so that no unread
// rest of the body is taken for another request.
func PeekBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if pb, ok := req.Body.(*peekedBody); ok {
		// Read already: the same bytes, from the start.
		raw := make([]byte, pb.Size())
		_, _ = pb.ReadAt(raw, 0)
		return raw, nil
	}
	raw, err := readAll(req.Body, req.ContentLength)
	req.Body.Close()
	var pb *peekedBody
	if cc, ok := c.(*chainContext); ok {
		pb = &cc.state.peeked
	} else {
		pb = new(peekedBody)
	}
	pb.Reset(raw)
	req.Body = pb
	if err != nil {
		endConnection(c)
		return nil, bodyReadError(err)
	}
	return raw, nil
}

// readAll reads r to its end into one buffer of the size the request
// declared, when it declared one, growing it only for a body longer than
// that.
func readAll(r io.Reader, size int64) ([]byte, error) {
	if size < 0 || size > 1<<20 {
		size = 512
	}
	b := make([]byte, 0, size+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}
