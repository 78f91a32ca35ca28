package gatekit

import (
	"bytes"
	stderrors "errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	apierrors "github.com/gatekit/gatekit/errors"
)

// DefaultBodyLimit is the body limit of routes that set none: 8 MiB.
const DefaultBodyLimit ByteSize = 8 << 20

// Config is everything Mount needs. The zero value is usable: OpenAI's
// envelope, an 8 MiB body limit everywhere, and slog.Default() for logs.
// The same structure loads from YAML with [LoadConfig].
type Config struct {
	// Shape is the error envelope's layout: openai (default), anthropic,
	// problem, flat or gateway.
	Shape apierrors.Shape `yaml:"shape"`
	// BodyLimit caps request bodies on routes without a limit of their own.
	// Default: DefaultBodyLimit. A negative value means no limit.
	BodyLimit ByteSize `yaml:"body_limit"`
	// Routes holds per-route settings, keyed by "METHOD /path" with Echo's
	// route pattern ("POST /v1/chat/completions"), or by "/path" alone for
	// every method.
	Routes map[string]RouteConfig `yaml:"routes"`
	// Logger receives 5xx causes and panics. Default: slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// RouteConfig is the per-route part of [Config].
type RouteConfig struct {
	// BodyLimit caps this route's request bodies. Zero takes the service's
	// limit; a negative value means no limit.
	BodyLimit ByteSize `yaml:"body_limit"`
}

// LoadConfig reads a YAML configuration file strictly: an unknown key or
// a value of the wrong type is an error naming the file and line.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gatekit: reading config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("gatekit: %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML strictly into a Config and checks it; an empty
// document is the zero Config.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !stderrors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !stderrors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("invalid configuration: more than one YAML document")
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports the first problem in cfg: an unknown shape or a
// malformed route key.
func (cfg Config) Validate() error {
	if _, err := apierrors.ParseShape(string(cfg.Shape)); err != nil {
		return fmt.Errorf("invalid configuration: shape: %w", err)
	}
	for key := range cfg.Routes {
		if _, _, err := parseRouteKey(key); err != nil {
			return fmt.Errorf("invalid configuration: routes: %w", err)
		}
	}
	return nil
}

// parseRouteKey splits "POST /v1/x" into method and path; "/v1/x" alone
// has the empty method, meaning every method.
func parseRouteKey(key string) (method, path string, err error) {
	method, path, ok := strings.Cut(strings.TrimSpace(key), " ")
	if !ok {
		method, path = "", key
	}
	path = strings.TrimSpace(path)
	if !strings.HasPrefix(path, "/") {
		return "", "", fmt.Errorf("route %q: want \"METHOD /path\" or \"/path\"", key)
	}
	if method != "" {
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
			http.MethodDelete, http.MethodOptions:
		default:
			return "", "", fmt.Errorf("route %q: unknown method %q", key, method)
		}
	}
	return method, path, nil
}

// ByteSize is a number of bytes that reads from YAML as an integer or with
// a unit: "512KiB", "1 MiB", "75MB", "2GB". The binary units (KiB, MiB,
// GiB) are powers of 1024; kB, MB and GB are powers of 1000.
type ByteSize int64

// UnmarshalYAML parses an integer or a size with a unit, naming the line
// of a value it cannot read.
func (b *ByteSize) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number of bytes or a string like \"1MiB\"", node.Line)
	}
	n, err := ParseByteSize(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", node.Line, err)
	}
	*b = n
	return nil
}

// ParseByteSize reads "1048576", "1MiB", "1 MiB", "75MB" or "unlimited"
// (-1).
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	if s == "unlimited" {
		return -1, nil
	}
	i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) && r != '-' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	mult := map[string]int64{"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, kB, MB, GB, KiB, MiB or GiB)", s, unit)
	}
	if n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return ByteSize(n * mult), nil
}

// String writes the size with the largest unit that divides it.
func (b ByteSize) String() string {
	if b < 0 {
		return "unlimited"
	}
	return apierrors.FormatBytes(int64(b))
}
