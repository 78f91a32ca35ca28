package gatekit

import (
	"context"
	"log/slog"
	"reflect"
	"testing"

	"github.com/gatekit/gatekit/keys"
)

const runtimeKeysYAML = `
tiers:
  free:
    models: [gk-echo]
    rpm: 10
    budget: {limit: "1.00", period: monthly}
  pro: {}
keys:
  - {id: a, key: sk-a, account: demo, tier: free}
  - {id: b, key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", tier: pro, rpm: 5, models: [gk-large]}
  - {id: c, key: sk-c, account: demo, tier: free, budget: {limit: "0", period: daily}}
budgets:
  accounts:
    demo: {limit: "10.00", period: monthly}
runtime_keys:
  prefix: acme
`

// The file's keys, loaded into a runtime store, resolve to exactly the
// principals the static key store gives them.
func TestFileKeysInTheRuntimeStoreResolveAsFromTheFile(t *testing.T) {
	cfg, err := ParseConfig([]byte(runtimeKeysYAML))
	if err != nil {
		t.Fatal(err)
	}
	static, err := keyStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeKeys.Store = keys.NewMemory()
	cfg.Logger = slog.New(slog.DiscardHandler)
	reg, err := newRegistry(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx := context.Background()
	for _, key := range []string{"sk-a", "test", "sk-c"} {
		want, ok, err := static.Lookup(ctx, key)
		if !ok || err != nil {
			t.Fatalf("static %q: %v %v", key, ok, err)
		}
		got, ok, err := reg.Lookup(ctx, key)
		if !ok || err != nil {
			t.Fatalf("runtime %q: %v %v", key, ok, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: runtime %+v, file %+v", key, got, want)
		}
	}
	// Loading the file again (a restart on a durable store) changes nothing.
	v, _ := cfg.RuntimeKeys.Store.Version(ctx)
	reg2, err := newRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	if v2, _ := cfg.RuntimeKeys.Store.Version(ctx); v2 != v {
		t.Fatalf("reloading the same file wrote %d changes", v2-v)
	}
	// A start without key c revokes it.
	cfg.Keys = cfg.Keys[:2]
	reg3, err := newRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg3.Close()
	if _, ok, _ := reg3.Lookup(ctx, "sk-c"); ok {
		t.Fatal("a key taken out of the file still authenticates")
	}
	if k, err := reg3.Get(ctx, "c"); err != nil || k.State != keys.Revoked {
		t.Fatalf("key c after a start without it: %+v %v", k, err)
	}
	if _, ok, _ := reg.Lookup(ctx, "sk-c"); ok {
		t.Fatal("a key taken out of the file still authenticates on an instance that loaded it")
	}
	if _, ok, _ := reg3.Lookup(ctx, "sk-a"); !ok {
		t.Fatal("a key still in the file is refused")
	}
	if _, _, err := reg.Create(ctx, keys.Spec{Account: "x", Tier: "gold"}); err == nil {
		t.Fatal("a key of an undefined tier was created")
	}
	_, secret, err := reg.Create(ctx, keys.Spec{Account: "x", Tier: "free"})
	if err != nil || !keys.WellFormed("acme", secret) {
		t.Fatalf("%q %v", secret, err)
	}
}

func TestRuntimeKeysPrefixIsChecked(t *testing.T) {
	if _, err := ParseConfig([]byte("runtime_keys: {prefix: \"Not OK\"}\n")); err == nil {
		t.Fatal("a prefix with capitals and a space was accepted")
	}
}
