package keys_test

import (
	"context"
	"testing"

	"github.com/gatekit/gatekit/keys"
)

func benchRegistry(b *testing.B) (*keys.Registry, string) {
	b.Helper()
	r, err := keys.New(keys.NewMemory(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	_, secret, err := r.Create(context.Background(), keys.Spec{Account: "acme"})
	if err != nil {
		b.Fatal(err)
	}
	return r, secret
}

// A cached key, and a key whose checksum fails, cost a hash and a map
// read: no allocation.
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	r, secret := benchRegistry(b)
	bad := secret[:len(secret)-1] + "x"
	r.Lookup(ctx, secret)
	for _, bc := range []struct{ name, key string }{{"cached", secret}, {"bad-checksum", bad}, {"foreign", "sk-someone-elses-key"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.Lookup(ctx, bc.key)
			}
		})
	}
}

func TestLookupOfACachedKeyDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	r, err := keys.New(keys.NewMemory(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, secret, err := r.Create(ctx, keys.Spec{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	r.Lookup(ctx, secret)
	bad := secret[:len(secret)-1] + "x"
	for _, key := range []string{secret, bad} {
		if n := testing.AllocsPerRun(100, func() { r.Lookup(ctx, key) }); n != 0 {
			t.Errorf("%d allocations per lookup", int(n))
		}
	}
}
