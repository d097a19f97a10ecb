package main

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/servertest"
)

const adminSecret = "flt_test_admin_secret_0123456789abcdefghijklmnop"

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

type artifactResp struct {
	ID       int64             `json:"id"`
	Name     string            `json:"name"`
	Version  string            `json:"version"`
	Filename string            `json:"filename"`
	Type     string            `json:"type"`
	Size     int64             `json:"size"`
	SHA256   string            `json:"sha256"`
	SHA1     string            `json:"sha1"`
	MD5      string            `json:"md5"`
	Labels   map[string]string `json:"labels"`
}

func hexSum(h interface{ Sum([]byte) []byte }) string { return hex.EncodeToString(h.Sum(nil)) }

// blobFiles lists every file under the blob directory.
func blobFiles(t *testing.T, dir string) []string {
	var files []string
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func TestArtifactUploadDownload(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "server", "--listen", "127.0.0.1:0", "--data-dir", dir)
	a := &servertest.API{T: t, Base: srv.URL, Token: adminSecret}

	data := randomBytes(64<<20, 1)
	s256, s1, m5 := sha256.Sum256(data), sha1.Sum(data), md5.Sum(data)
	var art artifactResp
	a.Must(201, "PUT", "/api/v1/artifacts/kiosk-fw/1.2.0?filename=kiosk.bin&type=binary&labels=app=base,tier=gold&sha256="+hex.EncodeToString(s256[:]),
		bytes.NewReader(data), &art)
	if art.Size != int64(len(data)) || art.SHA256 != hex.EncodeToString(s256[:]) || art.SHA1 != hex.EncodeToString(s1[:]) ||
		art.MD5 != hex.EncodeToString(m5[:]) || art.Filename != "kiosk.bin" || art.Labels["tier"] != "gold" {
		t.Fatalf("upload metadata = %+v", art)
	}

	// Whole download.
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/artifacts/kiosk-fw/1.2.0/content", nil)
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n != int64(len(data)) || hexSum(h) != art.SHA256 {
		t.Fatalf("download: status %d, %d bytes, sha256 %s", resp.StatusCode, n, hexSum(h))
	}
	etag := resp.Header.Get("ETag")
	if etag != `"`+art.SHA256+`"` {
		t.Fatalf("ETag = %q", etag)
	}

	// Range download, and a range resumed from an offset.
	for _, rg := range []struct {
		header     string
		start, end int
	}{{"bytes=0-1023", 0, 1023}, {"bytes=33554432-", 33554432, len(data) - 1}, {"bytes=-100", len(data) - 100, len(data) - 1}} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/artifacts/kiosk-fw/1.2.0/content", nil)
		req.Header.Set("Authorization", "Bearer "+adminSecret)
		req.Header.Set("Range", rg.header)
		req.Header.Set("If-Range", etag)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 206 || !bytes.Equal(body, data[rg.start:rg.end+1]) {
			t.Fatalf("Range %s: status %d, %d bytes", rg.header, resp.StatusCode, len(body))
		}
	}
	// An unsatisfiable range is a 416.
	req, _ = http.NewRequest("GET", srv.URL+"/api/v1/artifacts/kiosk-fw/1.2.0/content", nil)
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(data)+10))
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable range = %d, want 416", resp.StatusCode)
	}
	// HEAD gives the size without a body.
	req, _ = http.NewRequest("HEAD", srv.URL+"/api/v1/artifacts/kiosk-fw/1.2.0/content", nil)
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD = %d, length %d", resp.StatusCode, resp.ContentLength)
	}

	// The same bytes again are idempotent; different bytes are a conflict.
	a.Must(200, "PUT", "/api/v1/artifacts/kiosk-fw/1.2.0?filename=kiosk.bin", bytes.NewReader(data), nil)
	code, body := a.Do("PUT", "/api/v1/artifacts/kiosk-fw/1.2.0", bytes.NewReader([]byte("other bytes")))
	if code != 409 || servertest.ErrorCode(t, body) != "conflict" {
		t.Fatalf("conflicting re-upload = %d %s", code, body)
	}
	if files := blobFiles(t, dir); len(files) != 1 {
		t.Fatalf("blob files after conflict = %v, want only the artifact", files)
	}

	// Multipart upload streams the "file" part.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("type", "swu")
	mw.WriteField("labels", `{"board":"rev2"}`)
	fw, _ := mw.CreateFormFile("file", "update.swu")
	fw.Write([]byte("swu payload"))
	mw.Close()
	req, _ = http.NewRequest("PUT", srv.URL+"/api/v1/artifacts/kiosk-os/2.0.0", &mp)
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var mpArt artifactResp
	json.NewDecoder(resp.Body).Decode(&mpArt)
	resp.Body.Close()
	if resp.StatusCode != 201 || mpArt.Filename != "update.swu" || mpArt.Type != "swu" || mpArt.Size != 11 || mpArt.Labels["board"] != "rev2" {
		t.Fatalf("multipart upload = %d %+v", resp.StatusCode, mpArt)
	}

	// Listing sorts versions semantically.
	for _, v := range []string{"1.10.0", "1.9.0"} {
		a.Must(201, "PUT", "/api/v1/artifacts/kiosk-fw/"+v, []byte("v"+v), nil)
	}
	var list struct {
		Items []artifactResp `json:"items"`
		Total int            `json:"total"`
	}
	a.Must(200, "GET", "/api/v1/artifacts?name=kiosk-fw", nil, &list)
	var versions []string
	for _, it := range list.Items {
		versions = append(versions, it.Version)
	}
	if strings.Join(versions, " ") != "1.2.0 1.9.0 1.10.0" || list.Total != 3 {
		t.Fatalf("versions = %v (total %d)", versions, list.Total)
	}
	a.Must(200, "GET", "/api/v1/artifacts?selector=board=rev2", nil, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "kiosk-os" {
		t.Fatalf("selector listing = %+v", list.Items)
	}

	// PATCH and DELETE.
	a.Must(200, "PATCH", "/api/v1/artifacts/kiosk-fw/1.9.0", map[string]any{"description": "bad build", "labels": map[string]string{"status": "bad"}}, nil)
	a.Must(204, "DELETE", "/api/v1/artifacts/kiosk-fw/1.9.0", nil, nil)
	a.Must(404, "GET", "/api/v1/artifacts/kiosk-fw/1.9.0", nil, nil)
}

func TestArtifactUploadFailuresLeaveNoTrace(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "server", "--listen", "127.0.0.1:0", "--data-dir", dir, "--max-artifact-size", "1048576")
	a := &servertest.API{T: t, Base: srv.URL, Token: adminSecret}
	data := randomBytes(512<<10, 2)

	// Hash mismatch: 400, and neither metadata nor bytes are kept.
	code, body := a.Do("PUT", "/api/v1/artifacts/fw/1.0.0?sha256="+strings.Repeat("ab", 32), bytes.NewReader(data))
	if code != 400 || servertest.ErrorCode(t, body) != "invalid" || !strings.Contains(string(body), "sha256 mismatch") {
		t.Fatalf("mismatch upload = %d %s", code, body)
	}
	a.Must(404, "GET", "/api/v1/artifacts/fw/1.0.0", nil, nil)
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Fatalf("blob files after mismatch: %v", files)
	}

	// Oversize, declared up front and streamed without a length: 413 both.
	big := randomBytes(1<<20+1, 3)
	code, body = a.Do("PUT", "/api/v1/artifacts/fw/2.0.0", bytes.NewReader(big))
	if code != 413 || servertest.ErrorCode(t, body) != "too_large" {
		t.Fatalf("oversize upload = %d %s", code, body)
	}
	code, body = a.Do("PUT", "/api/v1/artifacts/fw/2.0.0", io.MultiReader(bytes.NewReader(big)))
	if code != 413 || servertest.ErrorCode(t, body) != "too_large" {
		t.Fatalf("chunked oversize upload = %d %s", code, body)
	}
	a.Must(404, "GET", "/api/v1/artifacts/fw/2.0.0", nil, nil)
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Fatalf("blob files after oversize: %v", files)
	}

	// Bad names are 400s that say what to fix.
	for _, p := range []string{"/api/v1/artifacts/..%2F..%2Fetc/1", "/api/v1/artifacts/fw/-bad", "/api/v1/artifacts/fw/1.0?type=Bad%20Type", "/api/v1/artifacts/fw/1.0?labels=bad%20key=x"} {
		code, body := a.Do("PUT", p, []byte("x"))
		if code != 400 || servertest.ErrorCode(t, body) != "invalid" {
			t.Errorf("PUT %s = %d %s, want 400", p, code, body)
		}
	}
}

func TestBadInputIsA400(t *testing.T) {
	srv := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	a := &servertest.API{T: t, Base: srv.URL, Token: adminSecret}
	for _, tc := range []struct {
		method, path string
		body         any
		want         int
		mention      string
	}{
		{"POST", "/api/v1/devices", `{"id": "d1",`, 400, "cut off"},
		{"POST", "/api/v1/devices", `{"id": "d1", "colour": "red"}`, 400, `unknown field "colour"`},
		{"POST", "/api/v1/devices", `{"id": 7}`, 400, `field "id" must be a string`},
		{"POST", "/api/v1/devices", `{"id": "bad id"}`, 400, "device id"},
		{"POST", "/api/v1/devices", `{"id": "d1", "labels": {"a b": "c"}}`, 400, "label key"},
		{"POST", "/api/v1/devices", `{"id": "d1", "address": "ftp://x"}`, 400, "address"},
		{"POST", "/api/v1/devices", `{"id": "d1"} {"id": "d2"}`, 400, "after the JSON object"},
		{"POST", "/api/v1/devices", ``, 400, "empty"},
		{"GET", "/api/v1/devices?selector=region%20in%20(eu", nil, 400, "missing ')'"},
		{"GET", "/api/v1/devices?limit=0", nil, 400, "limit"},
		{"POST", "/api/v1/tenants", `{"name": "Not_Valid"}`, 400, "tenant name"},
		{"POST", "/api/v1/tokens", `{"scopes": ["root"]}`, 400, `unknown scope "root"`},
		{"POST", "/api/v1/tokens", `{"scopes": []}`, 400, "scopes must not be empty"},
		{"GET", "/api/v1/nothing-here", nil, 404, "no such endpoint"},
	} {
		code, body := a.Do(tc.method, tc.path, tc.body)
		var e struct{ Error struct{ Message string } }
		json.Unmarshal(body, &e)
		if code != tc.want || !strings.Contains(e.Error.Message, tc.mention) {
			t.Errorf("%s %s %v = %d %s; want %d mentioning %q", tc.method, tc.path, tc.body, code, body, tc.want, tc.mention)
			continue
		}
		servertest.ErrorCode(t, body)
	}
	// Nothing half-written: no device exists after the failures.
	var list struct{ Items []any }
	a.Must(200, "GET", "/api/v1/devices", nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("devices after bad requests: %v", list.Items)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, testEnv(), "server", "--listen", "127.0.0.1:0", "--data-dir", dir)
	if !strings.Contains(srv.Output(), "admin token   flt_") {
		t.Fatalf("first start did not print the admin token:\n%s", srv.Output())
	}
	secret, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "admin-token")); st.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token mode = %v, want 0600", st.Mode().Perm())
	}
	tok := strings.TrimSpace(string(secret))
	if !strings.Contains(srv.Output(), tok) {
		t.Fatal("printed token differs from the saved one")
	}
	a := &servertest.API{T: t, Base: srv.URL, Token: tok}
	a.Must(201, "PUT", "/api/v1/artifacts/fw/1.0.0", []byte("firmware"), nil)
	a.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "kiosk-1", "labels": map[string]string{"app": "base"}}, nil)
	a.Must(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"}, nil)
	if err := srv.Stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}

	srv2 := start(t, testEnv(), "server", "--listen", "127.0.0.1:0", "--data-dir", dir)
	if strings.Contains(srv2.Output(), tok) {
		t.Fatal("restart printed the admin token again")
	}
	a.Base = srv2.URL
	got := a.Must(200, "GET", "/api/v1/artifacts/fw/1.0.0/content", nil, nil)
	if string(got) != "firmware" {
		t.Fatalf("content after restart = %q", got)
	}
	var d struct{ Labels map[string]string }
	a.Must(200, "GET", "/api/v1/devices/kiosk-1", nil, &d)
	if d.Labels["app"] != "base" {
		t.Fatalf("device after restart = %+v", d)
	}
	a.Must(200, "GET", "/api/v1/tenants/acme", nil, nil)
}

func TestOperationalEndpoints(t *testing.T) {
	srv := start(t, testEnv("FLOTILLA_ADMIN_TOKEN="+adminSecret), "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	a := &servertest.API{T: t, Base: srv.URL}
	a.Must(200, "GET", "/healthz", nil, nil)
	var ready struct{ Status string }
	a.Must(200, "GET", "/readyz", nil, &ready)
	if ready.Status != "ready" {
		t.Fatalf("readyz = %+v", ready)
	}
	a.Token = adminSecret
	a.Must(200, "GET", "/api/v1/tenants", nil, nil)
	a.Token = ""
	metrics := string(a.Must(200, "GET", "/metrics", nil, nil))
	for _, want := range []string{
		`flotilla_http_requests_total{code="200",method="GET",route="GET /api/v1/tenants"} 1`,
		`flotilla_http_request_duration_seconds_bucket{method="GET",route="GET /api/v1/tenants"`,
		`flotilla_store_operation_duration_seconds_bucket{op="token by hash"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	a.Must(200, "GET", "/api/v1/openapi.json", nil, &doc)
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) == 0 {
		t.Fatalf("openapi = %v", doc.OpenAPI)
	}
}
