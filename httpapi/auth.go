package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Auth is who may use the API and the UI: a bearer token, a basic-auth user
// and password, either, or nobody checked (only on a loopback address:
// CheckAddr).
type Auth struct {
	Token    string
	User     string
	Password string
}

// Enabled reports whether any credential is set.
func (a Auth) Enabled() bool { return a.Token != "" || a.User != "" || a.Password != "" }

// Validate refuses half a basic-auth pair.
func (a Auth) Validate() error {
	if (a.User == "") != (a.Password == "") {
		return errors.New("--ui-user and --ui-password go together: set both, or neither")
	}
	return nil
}

// ErrOpenAddress is a non-loopback address without credentials.
var ErrOpenAddress = errors.New("refusing to serve the UI without credentials on a non-loopback address")

// CheckAddr refuses to serve on an address other hosts can reach (a
// non-loopback IP, a wildcard, a host name) unless credentials are set.
func CheckAddr(addr string, a Auth) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want host:port: %w", addr, err)
	}
	if a.Enabled() || IsLoopback(host) {
		return nil
	}
	return fmt.Errorf("%w: %s (set --ui-token or --ui-user and --ui-password, or listen on 127.0.0.1)", ErrOpenAddress, addr)
}

// IsLoopback reports whether host names only this machine.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tokenCookie carries the token for a browser, which cannot add a header to
// a page load or an EventSource.
const tokenCookie = "runnerd_ui_token"

// LoginPath is the page where a browser gives the token.
const LoginPath = "/login"

// Protect requires the credentials of a on every request to h (none when a
// sets none), and refuses cross-site writes: a POST must carry a JSON body
// and, when the browser says where it comes from, come from this origin.
func Protect(h http.Handler, a Auth) http.Handler {
	return &guard{next: h, auth: a}
}

type guard struct {
	next http.Handler
	auth Auth
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	if g.auth.Token != "" && r.URL.Path == LoginPath {
		g.login(w, r)
		return
	}
	if !g.allowed(r) {
		g.challenge(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := sameOrigin(r); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *guard) allowed(r *http.Request) bool {
	if !g.auth.Enabled() {
		return true
	}
	if g.auth.Token != "" {
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(v, g.auth.Token) {
			return true
		}
		if c, err := r.Cookie(tokenCookie); err == nil && equal(c.Value, g.auth.Token) {
			return true
		}
	}
	if g.auth.User != "" {
		if u, p, ok := r.BasicAuth(); ok && equal(u, g.auth.User) && equal(p, g.auth.Password) {
			return true
		}
	}
	return false
}

// equal compares in constant time (of the hashes: the lengths do not leak).
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// challenge answers an unauthenticated request: a browser's page load goes
// to the login page (token) or gets the basic-auth prompt; an API call gets
// 401 with a JSON error.
func (g *guard) challenge(w http.ResponseWriter, r *http.Request) {
	page := r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, Prefix) &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
	if page && g.auth.Token != "" && g.auth.User == "" {
		http.Redirect(w, r, LoginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	if g.auth.User != "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="runnerd", charset="UTF-8"`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="runnerd"`)
	}
	writeError(w, http.StatusUnauthorized, errors.New("unauthorized: this runnerd's UI needs its token (Authorization: Bearer …) or its user and password"))
}

// login shows the token form, and sets the cookie when the token posted is
// right.
func (g *guard) login(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	msg := ""
	if r.Method == http.MethodPost {
		if err := sameOrigin(r); err == nil {
			if tok := r.PostFormValue("token"); equal(tok, g.auth.Token) {
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true,
					SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
				http.Redirect(w, r, next, http.StatusSeeOther)
				return
			}
		}
		msg = `<p class="error">That is not this runnerd's UI token.</p>`
		w.WriteHeader(http.StatusUnauthorized)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>runnerd: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px system-ui,sans-serif;margin:4rem auto;max-width:24rem}input{font:inherit;width:100%%;margin:.5rem 0;padding:.4rem}.error{color:#b00020}</style>
</head><body><h1>runnerd</h1>%s<form method="post" action="%s?next=%s"><label>UI token (--ui-token, RUNNERD_UI_TOKEN)
<input type="password" name="token" autofocus autocomplete="current-password"></label><button type="submit">Sign in</button></form></body></html>`,
		msg, LoginPath, html.EscapeString(url.QueryEscape(next)))
}

// sameOrigin refuses a write another site's page could make: a form post
// (not JSON) to the API, or any request whose Origin is not this host.
func sameOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("cross-origin request from %q refused", o)
		}
	}
	// A page of another site can post a form, never a JSON body without
	// this origin's consent (CORS preflight).
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(r.URL.Path, Prefix) && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q refused: the API takes application/json (also for a POST without a body)", ct)
	}
	return nil
}
