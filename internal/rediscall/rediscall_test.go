package rediscall

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestCallerKnowsWhichClientsHonourDeadlines(t *testing.T) {
	for _, c := range []struct {
		name   string
		client redis.UniversalClient
		want   bool
	}{
		{"Client", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true}), true},
		{"Client without", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), false},
		{"ClusterClient", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true}), false},
		{"ClusterClient without", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), false},
		{"Ring", redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}, ContextTimeoutEnabled: true}), true},
		{"Ring without", redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}), false},
	} {
		call, err := New(c.client, Options{})
		c.client.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if call.honoursDeadlines != c.want {
			t.Errorf("%s: honoursDeadlines = %v, want %v", c.name, call.honoursDeadlines, c.want)
		}
		if call.timeout != DefaultTimeout {
			t.Errorf("%s: Timeout 0 gave %v, want DefaultTimeout", c.name, call.timeout)
		}
	}
}

func TestNewRejectsANilClientAndANegativeTimeout(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New accepted a nil client")
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	if _, err := New(client, Options{Timeout: -1}); err == nil {
		t.Error("New accepted a negative Timeout")
	}
}

func TestPrefixDefaultsAndRejectsBraces(t *testing.T) {
	if p, err := Prefix("", "def:"); p != "def:" || err != nil {
		t.Errorf(`Prefix("", "def:") = %q, %v; want the default`, p, err)
	}
	if p, err := Prefix("mine:", "def:"); p != "mine:" || err != nil {
		t.Errorf(`Prefix("mine:", "def:") = %q, %v`, p, err)
	}
	for _, p := range []string{"a{b", "a}b", "{x}:"} {
		if _, err := Prefix(p, "def:"); err == nil {
			t.Errorf("Prefix(%q) accepted braces", p)
		}
	}
}

func TestCallerKeepsAnEarlierDeadlineAndBoundsTheRest(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	call, err := New(client, Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}

	early, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	got, stop := call.bound(early)
	stop()
	if got != early {
		t.Error("a deadline before the Timeout was replaced")
	}

	late, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for name, ctx := range map[string]context.Context{"no deadline": context.Background(), "a later deadline": late} {
		start := time.Now()
		got, stop := call.bound(ctx)
		d, ok := got.Deadline()
		stop()
		if !ok || d.Before(start.Add(time.Second)) || d.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: deadline %v, %v; want the Timeout from now", name, d, ok)
		}
		if !errors.Is(got.Err(), context.Canceled) {
			t.Errorf("%s: cancel did not cancel the bounded context", name)
		}
	}
}

func TestCallerBatchesUnlessToldNotToOrTheClientCannot(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	for _, c := range []struct {
		name   string
		client redis.UniversalClient
		o      Options
		want   bool
	}{
		{"Client", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Options{}, true},
		{"Client, Unbatched", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Options{Unbatched: true}, false},
		{"ClusterClient", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), Options{}, true},
		{"Ring", ring, Options{}, false},
	} {
		call, err := New(c.client, c.o)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if call.Batched() != c.want {
			t.Errorf("%s: Batched() = %v, want %v", c.name, call.Batched(), c.want)
		}
		c.client.Close()
	}
}

func TestNewRejectsInvalidAutoPipelineOptions(t *testing.T) {
	// MaxConcurrentBatches above 1 gives up ordering, which go-redis
	// accepts only with Unordered.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1",
		AutoPipelineOptions: &redis.AutoPipelineOptions{MaxConcurrentBatches: 4}})
	defer client.Close()
	if _, err := New(client, Options{}); err == nil {
		t.Error("New accepted a client whose autopipeliner cannot be made")
	}
	if _, err := New(client, Options{Unbatched: true}); err != nil {
		t.Errorf("New, unbatched: %v", err)
	}
}
