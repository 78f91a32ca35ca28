package gatekit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
)

func TestParseConfigReadsEveryField(t *testing.T) {
	cfg, err := gatekit.ParseConfig([]byte(`
shape: problem
body_limit: 2MiB
routes:
  "POST /v1/chat/completions":
    body_limit: 1 MiB
  /v1/upload:
    body_limit: 75MB
  "GET /v1/stream":
    body_limit: unlimited
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Shape != apierrors.ShapeProblem || cfg.BodyLimit != 2<<20 ||
		cfg.Routes["POST /v1/chat/completions"].BodyLimit != 1<<20 ||
		cfg.Routes["/v1/upload"].BodyLimit != 75_000_000 || cfg.Routes["GET /v1/stream"].BodyLimit != -1 {
		t.Fatalf("%+v", cfg)
	}
}

func TestParseConfigIsStrictAndNamesTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "shape: openai\nbodylimit: 1MiB\n", "line 2"},
		{"unknown route key", "routes:\n  /v1/x:\n    body_limt: 1MiB\n", "line 3"},
		{"bad size", "body_limit: 1 parsec\n", "line 1"},
		{"negative size", "body_limit: -5\n", "line 1"},
		{"size as a list", "body_limit: [1]\n", "line 1"},
		{"unknown shape", "shape: xml\n", "unknown error shape"},
		{"bad route", "routes:\n  v1/x:\n    body_limit: 1\n", "METHOD /path"},
		{"bad method", "routes:\n  FETCH /v1/x:\n    body_limit: 1\n", "unknown method"},
		{"two documents", "shape: openai\n---\nshape: flat\n", "more than one"},
		{"duplicate key", "shape: openai\nshape: flat\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gatekit.ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestEmptyConfigIsTheZeroConfig(t *testing.T) {
	cfg, err := gatekit.ParseConfig(nil)
	if err != nil || cfg.Shape != "" || cfg.BodyLimit != 0 {
		t.Fatalf("%+v %v", cfg, err)
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gk.yaml")
	if err := os.WriteFile(path, []byte("nope: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := gatekit.LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v", err)
	}
	if _, err := gatekit.LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestByteSizeRoundTrips(t *testing.T) {
	for in, want := range map[string]gatekit.ByteSize{"0": 0, "1": 1, "1KiB": 1024, "1 kB": 1000, "3GiB": 3 << 30, "75MB": 75e6, "unlimited": -1} {
		got, err := gatekit.ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "1.5MiB", "1 TB", "99999999999GiB", "--1"} {
		if _, err := gatekit.ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q): no error", bad)
		}
	}
	if s := gatekit.ByteSize(1 << 20).String(); s != "1 MiB" {
		t.Errorf("String() = %q", s)
	}
}

func TestMountRejectsAnInvalidConfig(t *testing.T) {
	if _, err := gatekit.Mount(nil, gatekit.Config{Shape: "yaml"}); err == nil {
		t.Fatal("no error for an unknown shape")
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"shape: openai\n", "body_limit: 1MiB\nroutes:\n  /x:\n    body_limit: 2\n", "routes: [", "body_limit: !!binary AA==", "&a [*a]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := gatekit.ParseConfig(data)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("parsed config does not validate: %v", verr)
			}
		}
	})
}

func TestParseConfigReadsRouteShapesSplitTokenLimitsAndTheOverloadedStatus(t *testing.T) {
	cfg, err := gatekit.ParseConfig([]byte(`
shape: openai
catalog: {anthropic_overloaded_status: 529}
routes:
  "POST /v1/messages": {shape: anthropic, itpm: 40000, itpm_burst: 50000, otpm: 8000, otpm_burst: 9000}
`))
	if err != nil {
		t.Fatal(err)
	}
	rc := cfg.Routes["POST /v1/messages"]
	if rc.Shape != apierrors.ShapeAnthropic || cfg.Catalog.AnthropicOverloadedStatus != 529 ||
		rc.ITPM != 40000 || rc.ITPMBurst != 50000 || rc.OTPM != 8000 || rc.OTPMBurst != 9000 {
		t.Fatalf("%+v %+v", cfg.Catalog, rc)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown route shape", "routes:\n  /v1/x: {shape: soap}\n", "unknown error shape"},
		{"overloaded status 500", "catalog: {anthropic_overloaded_status: 500}\n", "503 or 529"},
		{"itpm burst alone", "routes:\n  /v1/x: {itpm_burst: 5}\n", "a burst needs its rate"},
		{"negative otpm", "routes:\n  /v1/x: {otpm: -1}\n", "must not be negative"},
		{"misspelt itpm", "routes:\n  /v1/x: {iptm: 5}\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := gatekit.ParseConfig([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
