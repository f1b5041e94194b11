package webui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

// The two pages are the one document, under a policy that lets it load
// its own files only; the assets are served; nothing else is.
func TestPages(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/", "/runs/20261202-011931-432-6eeb3f7d78f4"} {
		res, body := get(t, h, p)
		if res.StatusCode != 200 || !strings.Contains(body, `<script src="/assets/app.js"`) {
			t.Errorf("GET %s: %d\n%s", p, res.StatusCode, body)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
	}
	for _, p := range []string{"/assets/app.js", "/assets/dag.js", "/assets/app.css"} {
		if res, body := get(t, h, p); res.StatusCode != 200 || len(body) < 100 {
			t.Errorf("GET %s: %d, %d bytes", p, res.StatusCode, len(body))
		}
	}
	for _, p := range []string{"/assets/", "/assets/nope.js", "/runs/a/b", "/elsewhere"} {
		if res, _ := get(t, h, p); res.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
}

// No asset names another origin: the UI works with no network but
// runnerd's own address.
func TestAssetsAreSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range external.FindAllString(string(data), -1) {
			if m != "http://www.w3.org" && !strings.HasPrefix(m, "http://www.w3.org") {
				t.Errorf("%s names another origin: %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
