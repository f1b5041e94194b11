package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	open, token := Auth{}, Auth{Token: "t"}
	for _, tc := range []struct {
		addr string
		auth Auth
		ok   bool
	}{
		{"127.0.0.1:8080", open, true},
		{"[::1]:8080", open, true},
		{"localhost:8080", open, true},
		{":8080", open, false},
		{"0.0.0.0:8080", open, false},
		{"10.1.2.3:8080", open, false},
		{"runner.example:8080", open, false},
		{":8080", token, true},
		{"0.0.0.0:8080", Auth{User: "u", Password: "p"}, true},
	} {
		err := CheckAddr(tc.addr, tc.auth)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrOpenAddress)) {
			t.Errorf("CheckAddr(%q, %+v) = %v, want ok=%v", tc.addr, tc.auth, err, tc.ok)
		}
	}
	if err := CheckAddr("8080", open); err == nil {
		t.Error("CheckAddr took an address without a port")
	}
	if err := (Auth{User: "u"}).Validate(); err == nil {
		t.Error("a user without a password was accepted")
	}
}

// TestProtect: without credentials nothing gets through; the token works
// as a bearer header and, after the sign-in page, as a cookie; basic auth
// works; a form post or a cross-origin write to the API is refused even
// with credentials.
func TestProtect(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("inner")) })
	srv := httptest.NewServer(Protect(inner, Auth{Token: "s3cret", User: "ops", Password: "pw"}))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(method, path string, set func(*http.Request)) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if set != nil {
			set(req)
		}
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := call("GET", "/api/v1/runs", nil); res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("no credentials: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if res := call("GET", "/api/v1/runs", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") }); res.StatusCode != 401 {
		t.Errorf("wrong token: %d", res.StatusCode)
	}
	if res := call("GET", "/api/v1/runs", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }); res.StatusCode != 200 {
		t.Errorf("token: %d", res.StatusCode)
	}
	if res := call("GET", "/", func(r *http.Request) { r.SetBasicAuth("ops", "pw") }); res.StatusCode != 200 {
		t.Errorf("basic auth: %d", res.StatusCode)
	}
	if res := call("GET", "/", func(r *http.Request) { r.SetBasicAuth("ops", "nope") }); res.StatusCode != 401 {
		t.Errorf("bad password: %d", res.StatusCode)
	}

	form := url.Values{"token": {"s3cret"}}.Encode()
	login := func(body string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+LoginPath+"?next=/runs/x", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := login("token=nope"); res.StatusCode != 401 || len(res.Cookies()) != 0 {
		t.Errorf("sign in with a wrong token: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	res := login(form)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/runs/x" || len(res.Cookies()) != 1 {
		t.Fatalf("sign in: %d to %q, cookies %v", res.StatusCode, res.Header.Get("Location"), res.Cookies())
	}
	cookie := res.Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict", cookie)
	}
	withCookie := func(r *http.Request) { r.AddCookie(cookie) }
	if res := call("GET", "/api/v1/runs", withCookie); res.StatusCode != 200 {
		t.Errorf("cookie: %d", res.StatusCode)
	}

	json := func(r *http.Request) { withCookie(r); r.Header.Set("Content-Type", "application/json") }
	if res := call("POST", "/api/v1/runs/x/cancel", json); res.StatusCode != 200 {
		t.Errorf("JSON post: %d", res.StatusCode)
	}
	if res := call("POST", "/api/v1/runs/x/cancel", func(r *http.Request) {
		withCookie(r)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}); res.StatusCode != 403 {
		t.Errorf("form post to the API: %d, want 403", res.StatusCode)
	}
	if res := call("POST", "/api/v1/runs/x/cancel", func(r *http.Request) { json(r); r.Header.Set("Origin", "https://evil.example") }); res.StatusCode != 403 {
		t.Errorf("cross-origin post: %d, want 403", res.StatusCode)
	}

	// A browser's page load with a token-only UI goes to the sign-in page.
	tokenOnly := httptest.NewServer(Protect(inner, Auth{Token: "s3cret"}))
	defer tokenOnly.Close()
	req, _ := http.NewRequest("GET", tokenOnly.URL+"/runs/abc", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login?next=%2Fruns%2Fabc" {
		t.Errorf("page load without the token: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
}
