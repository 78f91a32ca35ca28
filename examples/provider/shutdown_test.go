package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/durable"
)

// lockedBuffer is a bytes.Buffer safe for the demo's logger and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SIGTERM while a client has stopped reading a long stream: once the grace
// period is over, the stream is settled for the words it sent, its
// connection is closed, and the demo exits cleanly with the spend on disk.
func TestShutdownSettlesAStuckStream(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &lockedBuffer{}
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-data", dir, "-grace", "300ms"}, func(string) string { return "" }, logs, func(a string) { addrc <- a })
	}()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("demo did not start: %v", err)
	}
	// gk-slow sends a word every 200 ms: 100 words take 20 s.
	body := `{"model":"gk-slow","stream":true,"messages":[{"role":"user","content":"` + strings.TrimSpace(strings.Repeat("w ", 100)) + `"}]}`
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-demo-free")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	// Read two words' events, then stop reading.
	sc := bufio.NewScanner(res.Body)
	for seen := 0; seen < 3 && sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "data: ") {
			seen++
		}
	}
	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the demo exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the demo did not exit within 10 s of SIGTERM")
	}
	if !strings.Contains(logs.String(), "settled=1") {
		t.Fatalf("no settlement at the end of the grace period:\n%s", logs.String())
	}
	st, err := durable.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := st.Ledger().Balance(context.Background(), budget.Scope{Tag: "demo", Kind: "key", ID: "demo-free", Limit: budget.Dollar, Period: budget.Monthly})
	if err != nil {
		t.Fatal(err)
	}
	// 100 prompt words at 1 USD/M and at least the 2 words sent at 2 USD/M;
	// not the whole 100 words the stream would have sent.
	if b.Spent < 100+2*2 || b.Spent >= 100+100*2 {
		t.Fatalf("spent %v after the stuck stream", b.Spent)
	}
}
