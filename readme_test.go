package gatekit_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite README.md's catalog table from the code")

const (
	catalogStart = "<!-- catalog:start (generated from errors.Catalog by readme_test.go; do not edit) -->\n"
	catalogEnd   = "<!-- catalog:end -->"
)

// catalogTable is the README's catalog, written from the code.
func catalogTable() string {
	var b strings.Builder
	b.WriteString("| code | status | type | retryable | default message |\n|---|---|---|---|---|\n")
	for _, s := range apierrors.Catalog() {
		status := fmt.Sprint(s.Status)
		if s.MidStream {
			status = "(mid-stream)"
		}
		retry := "no"
		if s.Retryable {
			retry = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s |\n", s.Code, status, s.Type, retry, s.Message)
	}
	return b.String()
}

// TestREADMECatalogMatchesTheCode fails when README.md's catalog table
// differs from errors.Catalog; `go test -run TestREADMECatalog -update-readme`
// rewrites it.
func TestREADMECatalogMatchesTheCode(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(readme, []byte(catalogStart))
	end := bytes.Index(readme, []byte(catalogEnd))
	if start < 0 || end < start {
		t.Fatalf("README.md lacks the catalog markers %q ... %q", catalogStart, catalogEnd)
	}
	got := string(readme[start+len(catalogStart) : end])
	want := catalogTable()
	if got == want {
		return
	}
	if *updateREADME {
		out := append(append(append([]byte{}, readme[:start+len(catalogStart)]...), want...), readme[end:]...)
		if err := os.WriteFile("README.md", out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README.md's catalog table is out of date; run go test -run TestREADMECatalog -update-readme .\nwant:\n%s", want)
}

// TestREADMEConfigExampleLoads parses the YAML example of README.md's
// Configuration section with the strict loader, so the documented format
// cannot drift from the code.
func TestREADMEConfigExampleLoads(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Configuration")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the Configuration section has no yaml block")
	}
	cfg, err := gatekit.ParseConfig([]byte(block))
	if err != nil {
		t.Fatalf("README's configuration example does not load: %v", err)
	}
	if len(cfg.Keys) == 0 || len(cfg.Tiers) == 0 || len(cfg.Routes) == 0 {
		t.Fatalf("example lost its sections: %+v", cfg)
	}
}

// TestREADMETwoProtocolsExampleLoads parses the YAML example of README.md's
// two-protocol section with the strict loader.
func TestREADMETwoProtocolsExampleLoads(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Two protocols")
	if !ok {
		t.Fatal("README.md has no two-protocol section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the two-protocol section has no yaml block")
	}
	cfg, err := gatekit.ParseConfig([]byte(block))
	if err != nil {
		t.Fatalf("README's two-protocol example does not load: %v", err)
	}
	rc := cfg.Routes["POST /v1/messages"]
	if rc.Shape != apierrors.ShapeAnthropic || rc.ITPM == 0 || rc.OTPM == 0 || cfg.Catalog.AnthropicOverloadedStatus != 529 {
		t.Fatalf("example lost its settings: %+v %+v", cfg.Catalog, rc)
	}
}
