// Command gatekit manages a gatekit service's API keys and account
// budgets through its admin API.
//
//	go run ./cmd/gatekit keys create --account acme --tier free
//	go run ./cmd/gatekit keys list
//	go run ./cmd/gatekit keys get KEY_ID
//	go run ./cmd/gatekit keys rotate KEY_ID --grace 1h
//	go run ./cmd/gatekit keys revoke KEY_ID
//	go run ./cmd/gatekit keys usage KEY_ID
//	go run ./cmd/gatekit accounts budget acme [--set 50.00 --period monthly]
//
// It talks to -url (env GATEKIT_ADMIN_URL, default
// http://127.0.0.1:8080/admin/v1) with the admin token of -token (env
// GATEKIT_ADMIN_TOKEN), and prints the API's JSON answers. A created or
// rotated key's secret is printed once; the service keeps only its digest.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultURL is where the admin API is looked for without -url.
const DefaultURL = "http://127.0.0.1:8080/admin/v1"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, http.DefaultClient))
}

const usage = `usage: gatekit [keys|accounts] COMMAND [flags]

  keys create --account ACCOUNT [--tier T] [--models a,b] [--id ID] [--expires 720h]
              [--budget 5.00 --period monthly] [--rpm N] [--tpm N] [--max-parallel N]
  keys list [--limit N] [--after ID]
  keys get ID
  keys update ID [--tier T] [--models a,b] [--expires 720h]
  keys rotate ID [--grace 1h]
  keys revoke ID
  keys usage ID [--route "POST /v1/chat/completions"]
  accounts budget ACCOUNT [--set 50.00 [--period monthly]]

Every command takes --url (env GATEKIT_ADMIN_URL, default ` + DefaultURL + `)
and --token (env GATEKIT_ADMIN_TOKEN).
`

// errUsage is a command line that names no command.
var errUsage = errors.New("unknown command")

// run runs one command and returns the exit status.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, client *http.Client) int {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	c := &cli{getenv: getenv, stdout: stdout, stderr: stderr, client: client}
	err := c.dispatch(args[0], args[1], args[2:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 2
	default:
		fmt.Fprintln(stderr, "gatekit:", err)
		return 1
	}
}

type cli struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	client         *http.Client
	base, token    string
}

// flags returns a flag set with --url and --token.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	def := c.getenv("GATEKIT_ADMIN_URL")
	if def == "" {
		def = DefaultURL
	}
	fs.StringVar(&c.base, "url", def, "the admin API's base URL")
	fs.StringVar(&c.token, "token", c.getenv("GATEKIT_ADMIN_TOKEN"), "the admin token")
	return fs
}

// parse parses args, which may start with one positional argument (an id)
// before the flags; want says whether that argument is required.
func parse(fs *flag.FlagSet, args []string, want bool) (string, error) {
	id := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	if want && id == "" {
		return "", fmt.Errorf("%s: an id is required", fs.Name())
	}
	return id, nil
}

func (c *cli) dispatch(group, cmd string, args []string) error {
	switch group + " " + cmd {
	case "keys create":
		return c.create(args)
	case "keys list":
		fs := c.flags("keys list")
		limit := fs.Int("limit", 100, "keys per page")
		after := fs.String("after", "", "list keys with ids after this one")
		if _, err := parse(fs, args, false); err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *after != "" {
			q.Set("after", *after)
		}
		return c.do(http.MethodGet, "/keys?"+q.Encode(), nil)
	case "keys get", "keys revoke":
		fs := c.flags(group + " " + cmd)
		id, err := parse(fs, args, true)
		if err != nil {
			return err
		}
		if cmd == "get" {
			return c.do(http.MethodGet, "/keys/"+url.PathEscape(id), nil)
		}
		return c.do(http.MethodPost, "/keys/"+url.PathEscape(id)+"/revoke", nil)
	case "keys update":
		return c.update(args)
	case "keys rotate":
		fs := c.flags("keys rotate")
		grace := fs.Duration("grace", 0, "how long the current secret keeps working")
		id, err := parse(fs, args, true)
		if err != nil {
			return err
		}
		return c.do(http.MethodPost, "/keys/"+url.PathEscape(id)+"/rotate", map[string]any{"grace_seconds": int64(grace.Round(time.Second) / time.Second)})
	case "keys usage":
		fs := c.flags("keys usage")
		route := fs.String("route", "", "the route, \"METHOD /path\" (default: the service's)")
		id, err := parse(fs, args, true)
		if err != nil {
			return err
		}
		path := "/keys/" + url.PathEscape(id) + "/usage"
		if *route != "" {
			path += "?" + url.Values{"route": {*route}}.Encode()
		}
		return c.do(http.MethodGet, path, nil)
	case "accounts budget":
		fs := c.flags("accounts budget")
		set := fs.String("set", "", "set the budget to this many USD per period")
		period := fs.String("period", "monthly", "the budget's period: none, daily, weekly or monthly")
		id, err := parse(fs, args, true)
		if err != nil {
			return err
		}
		path := "/accounts/" + url.PathEscape(id) + "/budget"
		if *set == "" {
			return c.do(http.MethodGet, path, nil)
		}
		return c.do(http.MethodPut, path, map[string]any{"limit_usd": *set, "period": *period})
	}
	return errUsage
}

// keyFlags are the settings create and update share.
type keyFlags struct {
	tier, models *string
	expires      *time.Duration
}

func addKeyFlags(fs *flag.FlagSet) keyFlags {
	return keyFlags{
		tier:    fs.String("tier", "", "the key's tier"),
		models:  fs.String("models", "", "comma-separated models the key may use (default: its tier's)"),
		expires: fs.Duration("expires", 0, "how long from now the key works (default: no expiry)"),
	}
}

func (kf keyFlags) into(body map[string]any, fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "tier":
			body["tier"] = *kf.tier
		case "models":
			body["models"] = splitList(*kf.models)
		case "expires":
			body["expires_at"] = time.Now().Add(*kf.expires).UTC().Format(time.RFC3339)
		}
	})
}

func (c *cli) create(args []string) error {
	fs := c.flags("keys create")
	account := fs.String("account", "", "the account the key belongs to (required)")
	id := fs.String("id", "", "the key's id (default: generated)")
	kf := addKeyFlags(fs)
	limit := fs.String("budget", "", "the key's own budget in USD per period")
	period := fs.String("period", "monthly", "the budget's period")
	rpm := fs.Int64("rpm", 0, "the key's own requests per minute")
	tpm := fs.Int64("tpm", 0, "the key's own tokens per minute")
	parallel := fs.Int64("max-parallel", 0, "the key's own requests at once")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	if *account == "" {
		return errors.New("keys create: --account is required")
	}
	body := map[string]any{"account": *account}
	if *id != "" {
		body["id"] = *id
	}
	kf.into(body, fs)
	if *limit != "" {
		body["budget"] = map[string]any{"limit_usd": *limit, "period": *period}
	}
	if *rpm != 0 || *tpm != 0 || *parallel != 0 {
		body["limits"] = map[string]any{"rpm": *rpm, "tpm": *tpm, "max_parallel": *parallel}
	}
	return c.do(http.MethodPost, "/keys", body)
}

func (c *cli) update(args []string) error {
	fs := c.flags("keys update")
	kf := addKeyFlags(fs)
	id, err := parse(fs, args, true)
	if err != nil {
		return err
	}
	body := map[string]any{}
	kf.into(body, fs)
	if len(body) == 0 {
		return errors.New("keys update: nothing to change (give --tier, --models or --expires)")
	}
	return c.do(http.MethodPatch, "/keys/"+url.PathEscape(id), body)
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// do sends one request and prints its answer: the JSON on success, the
// envelope's code and message on failure.
func (c *cli) do(method, path string, body any) error {
	if c.token == "" {
		return errors.New("no admin token: give --token or set GATEKIT_ADMIN_TOKEN")
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(c.base, "/")+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if res.StatusCode >= 300 {
		var env struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &env) == nil && env.Error.Code != "" {
			return fmt.Errorf("%s (%d): %s", env.Error.Code, res.StatusCode, env.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, res.Status)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(b)
	}
	fmt.Fprintln(c.stdout, strings.TrimSpace(pretty.String()))
	var secret struct {
		Secret string `json:"secret"`
	}
	if json.Unmarshal(b, &secret) == nil && secret.Secret != "" {
		fmt.Fprintln(c.stderr, "The secret above is shown once: the service keeps only its SHA-256 digest.")
	}
	return nil
}
