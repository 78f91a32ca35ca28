package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

const adminToken = "demo-admin-token-0123456789"

func adminCall(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func chat(t *testing.T, base, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(`{"model": "gk-echo", "messages": [{"role": "user", "content": "hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestDemoAdminAPIMakesKeysThatWorkAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"memory", func(*testing.T) []string { return nil }},
		{"data", func(t *testing.T) []string { return []string{"-data", t.TempDir()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := startDemo(t, append(tc.args(t), "-admin-token", adminToken)...)
			code, body := adminCall(t, http.MethodPost, base+"/admin/v1/keys", `{"account": "acme", "tier": "free"}`)
			var k struct{ ID, Secret string }
			if code != http.StatusCreated || json.Unmarshal([]byte(body), &k) != nil {
				t.Fatalf("create: %d %s", code, body)
			}
			if code, body := chat(t, base, k.Secret); code != http.StatusOK {
				t.Fatalf("chat with the new key: %d %s", code, body)
			}
			// The file's keys still work, and are listed read-only.
			if code, body := chat(t, base, "sk-demo-pro"); code != http.StatusOK {
				t.Fatalf("chat with the file's key: %d %s", code, body)
			}
			if code, body := adminCall(t, http.MethodGet, base+"/admin/v1/keys/demo-pro", ""); code != http.StatusOK || !strings.Contains(body, `"read_only":true`) {
				t.Fatalf("the file's key: %d %s", code, body)
			}
			if code, body := adminCall(t, http.MethodPost, base+"/admin/v1/keys/"+k.ID+"/revoke", ""); code != http.StatusOK {
				t.Fatalf("revoke: %d %s", code, body)
			}
			if code, body := chat(t, base, k.Secret); code != http.StatusUnauthorized || !strings.Contains(body, "invalid_api_key") {
				t.Fatalf("chat with the revoked key: %d %s", code, body)
			}
		})
	}
}

func TestDemoHasNoAdminAPIWithoutAToken(t *testing.T) {
	base := startDemo(t)
	if code, body := adminCall(t, http.MethodGet, base+"/admin/v1/keys", ""); code != http.StatusNotFound {
		t.Fatalf("%d %s", code, body)
	}
}
