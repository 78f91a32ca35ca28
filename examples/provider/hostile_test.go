package main

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

func TestDemoAnswersHEADOnEveryGETRoute(t *testing.T) {
	base := startDemo(t)
	for _, tc := range []struct {
		path, key string
		status    int
		ct        string
	}{
		{"/healthz", "", 200, "text/plain"},
		{"/v1/models", "sk-demo-free", 200, "application/json"},
		{"/v1/models/gk-echo", "sk-demo-free", 200, "application/json"},
		{"/v1/key", "sk-demo-free", 200, "application/json"},
		{"/v1/models", "", 401, "application/json"},
		{"/metrics", "", 200, "text/plain"},
	} {
		get, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		head, _ := http.NewRequest(http.MethodHead, base+tc.path, nil)
		for _, r := range []*http.Request{get, head} {
			if tc.key != "" {
				r.Header.Set("Authorization", "Bearer "+tc.key)
			}
		}
		gres, err := http.DefaultClient.Do(get)
		if err != nil {
			t.Fatal(err)
		}
		gres.Body.Close()
		res, err := http.DefaultClient.Do(head)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || len(body) != 0 {
			t.Errorf("HEAD %s: %d with %d body bytes, want %d and none", tc.path, res.StatusCode, len(body), tc.status)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ct) || ct != gres.Header.Get("Content-Type") {
			t.Errorf("HEAD %s: Content-Type %q, GET's %q", tc.path, ct, gres.Header.Get("Content-Type"))
		}
	}
}

func TestDemoSaysAMultipartUploadLacksItsBoundary(t *testing.T) {
	base := startDemo(t)
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	part, _ := w.CreateFormFile("file", "a.wav")
	part.Write([]byte("RIFF"))
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/audio/transcriptions", &buf)
	req.Header.Set("Authorization", "Bearer sk-demo-pro")
	req.Header.Set("Content-Type", "multipart/form-data")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 4 || !strings.Contains(string(body), "boundary") || strings.Contains(string(body), "expected 'multipart/form-data'") {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
}

func TestDemoCountsFailedAuthenticationsByReason(t *testing.T) {
	base := startDemo(t)
	for _, auth := range []string{"Bearer sk-guess", "Token sk-demo-free", ""} {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/models", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%q: %d", auth, res.StatusCode)
		}
	}
	_, metrics := get(t, base+"/metrics", "")
	for _, reason := range []string{"unknown_key", "malformed_header", "missing_key"} {
		if want := `gatekit_auth_failures_total{reason="` + reason + `"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("no %s in /metrics", want)
		}
	}
	if strings.Contains(metrics, "sk-guess") {
		t.Error("/metrics holds a key")
	}
}
