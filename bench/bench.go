// Package bench measures what gatekit costs on top of bare Echo, next to the
// rate limiters people put in front of Echo instead: Echo's own RateLimiter,
// go-chi/httprate, sethvargo/go-limiter, ulule/limiter, and, on Redis,
// go-redis/redis_rate.
//
// It is a module of its own so that none of the peers ever enter gatekit's
// dependency graph. Every contestant serves the same Echo route (POST
// /v1/chat/completions with a small JSON chat body, answered with a fixed
// JSON body) to the same requests (one prebuilt template per API key, each
// goroutine serving its own copy) through the same discarding
// http.ResponseWriter, from b.RunParallel, each goroutine cycling through
// the keys.
//
// `go test -bench . -benchmem` runs the scenarios as ordinary benchmarks;
// `go run ./cmd/benchtable` runs them all in one process and prints a
// markdown table with the cost of each over bare Echo and the verdict on
// gatekit's performance targets.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"
)

// Route is the one route every contestant serves, as POST.
const Route = "/v1/chat/completions"

// Model is the model every request asks for.
const Model = "gk-echo"

// ChatRequestJSON is the body of every request: a small OpenAI-style chat
// completion request with max_tokens, so that gatekit's estimate reads a
// prompt and an output allowance from it.
var ChatRequestJSON = []byte(`{"model":"gk-echo","messages":[{"role":"user","content":"Say pong."}],"max_tokens":16}`)

// ChatResponseJSON is the fixed body every contestant answers with. Its
// usage is what the billable route reports with middleware.ReportUsage.
var ChatResponseJSON = []byte(`{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gk-echo",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`)

// The usage ChatResponseJSON reports.
const (
	UsagePromptTokens     = 9
	UsageCompletionTokens = 1
)

// KeyCounts are the numbers of distinct API keys every scenario runs with.
var KeyCounts = []int{1024, 100_000}

// NeverDeny is a limit, per key and minute, that no benchmark reaches.
const NeverDeny = 1_000_000_000

// RedisInFlight is how many requests the Redis scenarios keep in flight.
const RedisInFlight = 32

// FreshHeaderMaps makes every response start with a new, empty header map,
// as net/http's server does, instead of one made with room for 16 headers
// and cleared between requests. A response of more than 8 headers then
// pays for the map to grow, as it does in a real server. Set it before Run.
var FreshHeaderMaps bool

// Keys is a set of API keys with one prebuilt request each.
type Keys struct {
	// Raw are the API keys, as clients send them.
	Raw []string
	// IDs are the principal ids gatekit knows the keys by.
	IDs []string
	// Requests are the templates of POST Route, one per key, with
	// "Authorization: Bearer <key>", "Content-Type: application/json" and
	// the ContentLength of ChatRequestJSON. They are shared by every
	// goroutine and never served themselves: a Client serves a copy with
	// its own body (gatekit's body limit and estimate replace a request's
	// Body).
	Requests []*http.Request
}

// NewKeys builds n keys and their request templates.
func NewKeys(n int) *Keys {
	k := &Keys{Raw: make([]string, n), IDs: make([]string, n), Requests: make([]*http.Request, n)}
	tmpl := httptest.NewRequest(http.MethodPost, Route, nil)
	tmpl.ContentLength = int64(len(ChatRequestJSON))
	for i := range n {
		// 51 characters, like an OpenAI key.
		k.Raw[i] = fmt.Sprintf("sk-bench-%010d-0123456789abcdefghijklmnopqrstuvw", i)
		k.IDs[i] = fmt.Sprintf("key_%08d", i)
		r := tmpl.Clone(context.Background())
		r.Header = http.Header{
			echo.HeaderAuthorization: {"Bearer " + k.Raw[i]},
			echo.HeaderContentType:   {echo.MIMEApplicationJSON},
		}
		k.Requests[i] = r
	}
	return k
}

// Client serves requests one at a time, as one goroutine of a benchmark
// does: each request is a copy of its key's template, into a struct the
// Client keeps, with ChatRequestJSON rewound as its body, answered into the
// Client's DiscardWriter. It allocates nothing per request, and every
// contestant, bare Echo included, pays for the same copy. A Client is not
// safe for concurrent use.
type Client struct {
	// W is the writer of the latest response.
	W    *DiscardWriter
	req  http.Request
	body requestBody
}

// requestBody is a rewindable request body.
type requestBody struct{ bytes.Reader }

// Close does nothing: the body is rewound for the next request instead.
func (*requestBody) Close() error { return nil }

// NewClient returns a Client with an empty DiscardWriter.
func NewClient() *Client { return &Client{W: NewDiscardWriter()} }

// Serve serves a copy of tmpl to h and returns the response's writer,
// reset before the request.
func (cl *Client) Serve(h http.Handler, tmpl *http.Request) *DiscardWriter {
	cl.W.Reset()
	cl.req = *tmpl
	cl.body.Reset(ChatRequestJSON)
	cl.req.Body = &cl.body
	h.ServeHTTP(cl.W, &cl.req)
	return cl.W
}

// APIKey is how the peers key their limits: the bearer token, the same
// string gatekit authenticates (peers do no authentication, so the token
// stands for the principal). It does not allocate.
func APIKey(r *http.Request) string {
	v := r.Header[echo.HeaderAuthorization]
	if len(v) == 0 {
		return ""
	}
	return strings.TrimPrefix(v[0], "Bearer ")
}

// Env is one scenario, set up for one key count and ready to run.
type Env struct {
	// Handler serves the requests (an *echo.Echo).
	Handler http.Handler
	// Keys are the keys and requests to cycle through.
	Keys *Keys
	// Want is the status every response must have.
	Want int
	// InFlight, when positive, is the number of requests to keep in flight
	// (b.SetParallelism(InFlight/GOMAXPROCS, rounded up)); otherwise
	// RunParallel's default of GOMAXPROCS.
	InFlight int
	// Counters, when set, snapshots counters by unit ("rt/op"); Run
	// reports how much each grew per request.
	Counters func() map[string]int64
	// PrimeN is how many keys Prime primes; 0 means all of them.
	PrimeN int
	// Direct, when set, is run per key instead of serving a request: for
	// the store-level Redis scenarios.
	Direct func(ctx context.Context, i int) error
	// Verify, when set, checks what the responses do not show: for the
	// full stack, that settlement charged the usage the handler reported.
	// Tests call it after Check.
	Verify func() error
	// Close releases what the scenario holds; it may be nil.
	Close func()

	failure atomic.Pointer[string]
}

// Failure returns why the last Run of env failed, or "" if it did not.
func (env *Env) Failure() string {
	if p := env.failure.Load(); p != nil {
		return *p
	}
	return ""
}

// Prime sends one request per key (or runs Direct once per key), so that
// the benchmark measures keys every store already tracks; for a denying
// scenario it exhausts each key's quota. It runs InFlight requests at once
// when that is set, and checks only Direct's errors.
func (env *Env) Prime() error {
	n := len(env.Keys.Requests)
	if env.PrimeN > 0 {
		n = min(n, env.PrimeN)
	}
	return primeConcurrently(n, max(1, env.InFlight), func(i int) error {
		if env.Direct != nil {
			return env.Direct(context.Background(), i)
		}
		NewClient().Serve(env.Handler, env.Keys.Requests[i])
		return nil
	})
}

// primeConcurrently runs f for keys [0, n) on workers goroutines.
func primeConcurrently(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// Check serves one request and returns an error unless it has the wanted
// status; header, when not empty, must also be set on the response.
func (env *Env) Check(header string) error {
	if env.Direct != nil {
		return env.Direct(context.Background(), 0)
	}
	w := NewClient().Serve(env.Handler, env.Keys.Requests[0])
	if w.Status != env.Want {
		return fmt.Errorf("status %d, want %d (headers %v)", w.Status, env.Want, w.H)
	}
	if header != "" && w.H.Get(header) == "" {
		return fmt.Errorf("no %s header in %v", header, w.H)
	}
	return nil
}

// Run is the benchmark body shared by every scenario: b.RunParallel, each
// goroutine starting at its own key and cycling through all of them, with a
// Client of its own, whose writer's header map is cleared per request (or,
// with FreshHeaderMaps, made anew). It
// reports allocations, "req/s", and "rt/op" when env counts round trips, and
// fails the benchmark if any response lacks the wanted status.
func Run(b *testing.B, env *Env) {
	reqs := env.Keys.Requests
	n := len(reqs)
	if env.InFlight > 0 {
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((env.InFlight + procs - 1) / procs)
	}
	var starts atomic.Int64
	var wrong atomic.Int64
	var lastStatus atomic.Int64
	var before map[string]int64
	if env.Counters != nil {
		before = env.Counters()
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Spread the goroutines' starting keys over the whole set.
		i := int(starts.Add(1)*7919) % n
		bad := int64(0)
		if env.Direct != nil {
			ctx := context.Background()
			for pb.Next() {
				if env.Direct(ctx, i) != nil {
					bad++
				}
				if i++; i == n {
					i = 0
				}
			}
		} else {
			cl := NewClient()
			for pb.Next() {
				if w := cl.Serve(env.Handler, reqs[i]); w.Status != env.Want {
					bad++
					lastStatus.Store(int64(w.Status))
				}
				if i++; i == n {
					i = 0
				}
			}
		}
		wrong.Add(bad)
	})
	b.StopTimer()
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "req/s")
	}
	if env.Counters != nil {
		for unit, v := range env.Counters() {
			b.ReportMetric(float64(v-before[unit])/float64(b.N), unit)
		}
	}
	if bad := wrong.Load(); bad > 0 {
		msg := fmt.Sprintf("%d of %d requests failed (want status %d, last got %d)", bad, b.N, env.Want, lastStatus.Load())
		env.failure.Store(&msg)
		b.Fatal(msg)
	}
}

// DiscardWriter is the http.ResponseWriter every contestant writes to: it
// keeps the headers and the status and counts the body's bytes.
type DiscardWriter struct {
	H      http.Header
	Status int
	Bytes  int
}

// NewDiscardWriter returns an empty DiscardWriter.
func NewDiscardWriter() *DiscardWriter { return &DiscardWriter{H: make(http.Header, 16)} }

// Header returns the response headers.
func (w *DiscardWriter) Header() http.Header { return w.H }

// Write counts p and drops it.
func (w *DiscardWriter) Write(p []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	w.Bytes += len(p)
	return len(p), nil
}

// WriteHeader records the status.
func (w *DiscardWriter) WriteHeader(code int) { w.Status = code }

// Reset makes w new again, keeping its header map's storage unless
// FreshHeaderMaps is set.
func (w *DiscardWriter) Reset() {
	if FreshHeaderMaps {
		w.H = make(http.Header)
	} else {
		clear(w.H)
	}
	w.Status, w.Bytes = 0, 0
}

// newEcho returns an Echo with mws and the route.
func newEcho(mws ...echo.MiddlewareFunc) *echo.Echo {
	e := echo.New()
	e.Use(mws...)
	addRoute(e)
	return e
}

// addRoute registers Route on e: a handler that answers ChatResponseJSON
// without reading the request.
func addRoute(e *echo.Echo) {
	e.POST(Route, func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, ChatResponseJSON)
	})
}
