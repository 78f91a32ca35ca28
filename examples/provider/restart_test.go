package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
)

// demoProcess is the demo built and run as its own process, so that it can
// be killed like a real service.
type demoProcess struct {
	cmd  *exec.Cmd
	base string
}

// buildDemo compiles the demo once per test.
func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "provider")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var listening = regexp.MustCompile(`msg="provider listening" addr=(\S+)`)

func startProcess(t *testing.T, bin, dataDir string) *demoProcess {
	t.Helper()
	// The demo's own configuration, with the pro tier's request limit
	// raised so that the load is never refused.
	config := filepath.Join(dataDir, "..", filepath.Base(dataDir)+".yaml")
	raised := strings.Replace(string(defaultConfig), "{rpm: 600,", "{rpm: 10000000,", 1)
	if raised == string(defaultConfig) {
		t.Fatal("the demo's pro limits moved; update the test")
	}
	if err := os.WriteFile(config, []byte(raised), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-data", dataDir, "-config", config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return &demoProcess{cmd: cmd, base: "http://" + a}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the demo did not start")
	}
	return nil
}

// chatCost sends one chat completion as the pro key and returns what it
// cost: gk-echo's 1 USD per million prompt tokens and 2 per million
// completion tokens.
func chatCost(base, idemKey string) (budget.Micros, []byte, error) {
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"gk-echo","messages":[{"role":"user","content":"one two three four"}]}`))
	req.Header.Set("Authorization", "Bearer sk-demo-pro")
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return 0, body, fmt.Errorf("status %d: %s", res.StatusCode, body)
	}
	cost, err := parseCost(body)
	return cost, body, err
}

// parseCost prices a completion's usage block.
func parseCost(body []byte) (budget.Micros, error) {
	var out struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, err
	}
	if out.Usage.PromptTokens == 0 {
		return 0, fmt.Errorf("no usage in %s", body)
	}
	return budget.Micros(out.Usage.PromptTokens + 2*out.Usage.CompletionTokens), nil
}

func costOf(t *testing.T, body []byte) budget.Micros {
	t.Helper()
	c, err := parseCost(body)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// spent reads the pro key's recorded spend from GET /v1/key.
func spent(t *testing.T, base string) budget.Micros {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/key", nil)
	req.Header.Set("Authorization", "Bearer sk-demo-pro")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st struct {
		Budgets []struct {
			Spent string `json:"spent_usd"`
		} `json:"budgets"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil || len(st.Budgets) == 0 {
		t.Fatalf("GET /v1/key: %v %+v", err, st)
	}
	m, err := budget.ParseMicros(st.Budgets[0].Spent)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ack is the spend acknowledged to clients by a moment.
type ack struct {
	at    time.Time
	total budget.Micros
}

// drive sends requests from 4 clients until the process stops answering,
// recording every acknowledged request's running total.
func drive(p *demoProcess) (acks []ack, maxCost budget.Micros) {
	var mu sync.Mutex
	var total budget.Micros
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cost, _, err := chatCost(p.base, "")
				if err != nil {
					return
				}
				mu.Lock()
				total += cost
				maxCost = max(maxCost, cost)
				acks = append(acks, ack{time.Now(), total})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acks, maxCost
}

// TestDemoKeepsSpendAcrossKillAndGracefulStop runs the demo on a data
// directory, kills it with SIGKILL at a random moment under load, and
// restarts it: the recorded spend is at least what was acknowledged more
// than one flush interval before the kill. Then a graceful stop (SIGTERM)
// keeps exactly everything, and an idempotent response replays after it.
func TestDemoKeepsSpendAcrossKillAndGracefulStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo as a process")
	}
	bin := buildDemo(t)
	dir := t.TempDir()

	p := startProcess(t, bin, dir)
	killAfter := 300*time.Millisecond + time.Duration(rand.Int64N(int64(500*time.Millisecond)))
	var killedAt time.Time
	go func() {
		time.Sleep(killAfter)
		killedAt = time.Now()
		p.cmd.Process.Kill()
	}()
	acks, maxCost := drive(p)
	p.cmd.Wait()
	if len(acks) < 10 {
		t.Fatalf("only %d requests before the kill", len(acks))
	}
	const flush, slack = 100 * time.Millisecond, 150 * time.Millisecond
	var safe budget.Micros
	for _, a := range acks {
		if a.at.Before(killedAt.Add(-flush - slack)) {
			safe = a.total
		}
	}
	all := acks[len(acks)-1].total

	p = startProcess(t, bin, dir)
	got := spent(t, p.base)
	t.Logf("killed after %v: %d requests acknowledged (%v); %v of it more than %v before the kill; %v recorded",
		killAfter, len(acks), all, safe, flush+slack, got)
	if got < safe || got > all+4*maxCost {
		t.Fatalf("recorded %v, want between %v and %v", got, safe, all+4*maxCost)
	}

	// Graceful stop: nothing is lost.
	before := got
	var more budget.Micros
	for range 20 {
		cost, _, err := chatCost(p.base, "")
		if err != nil {
			t.Fatal(err)
		}
		more += cost
	}
	_, firstBody, err := chatCost(p.base, "keep-me")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := chatCost(p.base, "keep-me"); err != nil { // a replay: charged nothing
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	p = startProcess(t, bin, dir)
	defer func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}()
	keptCost := costOf(t, firstBody)
	if got := spent(t, p.base); got != before+more+keptCost {
		t.Fatalf("after a graceful stop: recorded %v, want exactly %v", got, before+more+keptCost)
	}
	_, replayed, err := chatCost(p.base, "keep-me")
	if err != nil || string(replayed) != string(firstBody) {
		t.Fatalf("idempotent response after restart: %v\n%s\nwant\n%s", err, replayed, firstBody)
	}
	if _, err := os.Stat(filepath.Join(dir, "gatekit.db")); err != nil {
		t.Fatal(err)
	}
}
