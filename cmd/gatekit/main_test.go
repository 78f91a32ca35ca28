package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admin"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/middleware"
)

const token = "cli-test-token-0123456789"

func service(t *testing.T) *httptest.Server {
	t.Helper()
	cfg, err := gatekit.ParseConfig([]byte("auth: {paths: [/v1/]}\ntiers: {free: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeKeys.Store = keys.NewMemory()
	e := echo.New()
	g, err := gatekit.Mount(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.GET("/v1/whoami", func(c echo.Context) error { return c.String(http.StatusOK, middleware.GetPrincipal(c).ID) })
	if err := admin.Register(e.Group("/admin/v1"), admin.Config{Gate: g, Token: token}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() { srv.Close(); g.Close() })
	return srv
}

func cmd(t *testing.T, srv *httptest.Server, args ...string) (int, string, string) {
	t.Helper()
	env := map[string]string{"GATEKIT_ADMIN_URL": srv.URL + "/admin/v1", "GATEKIT_ADMIN_TOKEN": token}
	var out, errs bytes.Buffer
	code := run(args, func(k string) string { return env[k] }, &out, &errs, srv.Client())
	return code, out.String(), errs.String()
}

func TestCreateUseRotateRevokeFromTheCommandLine(t *testing.T) {
	srv := service(t)
	code, out, errs := cmd(t, srv, "keys", "create", "--account", "acme", "--tier", "free")
	if code != 0 || !strings.Contains(errs, "shown once") {
		t.Fatalf("create: %d %s %s", code, out, errs)
	}
	var k struct {
		ID, Secret string
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Secret == "" {
		t.Fatalf("create printed %s: %v", out, err)
	}
	whoami := func(secret string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := whoami(k.Secret); s != http.StatusOK {
		t.Fatalf("the new key: %d", s)
	}
	if code, out, _ := cmd(t, srv, "keys", "list"); code != 0 || !strings.Contains(out, k.ID) || strings.Contains(out, k.Secret) {
		t.Fatalf("list: %d %s", code, out)
	}
	code, out, _ = cmd(t, srv, "keys", "rotate", k.ID, "--grace", "0s")
	var r struct{ Secret string }
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Secret == "" {
		t.Fatalf("rotate: %d %s", code, out)
	}
	if whoami(k.Secret) != http.StatusUnauthorized || whoami(r.Secret) != http.StatusOK {
		t.Fatal("after a rotation without grace, the old secret must fail and the new one work")
	}
	if code, out, _ := cmd(t, srv, "keys", "revoke", k.ID); code != 0 || !strings.Contains(out, `"revoked"`) {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if whoami(r.Secret) != http.StatusUnauthorized {
		t.Fatal("a revoked key works")
	}
	if code, out, _ := cmd(t, srv, "accounts", "budget", "acme", "--set", "25.00"); code != 0 || !strings.Contains(out, `"25.00"`) {
		t.Fatalf("budget: %d %s", code, out)
	}
}

func TestErrorsArePrintedFromTheEnvelope(t *testing.T) {
	srv := service(t)
	if code, _, errs := cmd(t, srv, "keys", "get", "nope"); code != 1 || !strings.Contains(errs, "not_found (404)") {
		t.Fatalf("get: %d %s", code, errs)
	}
	if code, _, errs := cmd(t, srv, "keys", "create", "--account", "acme", "--tier", "gold"); code != 1 || !strings.Contains(errs, "invalid_request") {
		t.Fatalf("create: %d %s", code, errs)
	}
	if code, _, errs := cmd(t, srv, "keys", "create"); code != 1 || !strings.Contains(errs, "--account is required") {
		t.Fatalf("create without account: %d %s", code, errs)
	}
	if code, _, _ := cmd(t, srv, "keys", "frobnicate"); code != 2 {
		t.Fatalf("an unknown command: %d", code)
	}
	if code, _, errs := cmd(t, srv, "keys", "list", "--token", "wrong-token-0123456789"); code != 1 || !strings.Contains(errs, "invalid_api_key") {
		t.Fatalf("a wrong token: %d %s", code, errs)
	}
}
