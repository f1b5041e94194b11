package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/httpapi"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/webui"
)

// uiConfig is where the web UI and its JSON API listen, and who may use
// them.
type uiConfig struct {
	addr string
	auth httpapi.Auth
	ln   net.Listener // opened early by dev, so its banner can name it
}

func (c *uiConfig) register(f cli.Flags, defAddr string) {
	f.String(&c.addr, "ui-addr", defAddr, "address of the web UI and its JSON API under /api/v1/ (empty: none); a non-loopback address needs --ui-token or --ui-user/--ui-password")
	f.String(&c.auth.Token, "ui-token", "", "token the UI and API require (Authorization: Bearer, or the UI's sign-in page)")
	f.String(&c.auth.User, "ui-user", "", "basic-auth user the UI and API require (with --ui-password)")
	f.String(&c.auth.Password, "ui-password", "", "basic-auth password of --ui-user")
}

func (c *uiConfig) validate() []string {
	if c.addr == "" {
		return nil
	}
	var lines []string
	if err := c.auth.Validate(); err != nil {
		lines = append(lines, err.Error())
	}
	if err := httpapi.CheckAddr(c.addr, c.auth); err != nil {
		lines = append(lines, "--ui-addr: "+err.Error())
	}
	return lines
}

// listen opens the UI's listener once ("" listens nowhere).
func (c *uiConfig) listen() error {
	if c.addr == "" || c.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("--ui-addr %s: %w", c.addr, err)
	}
	c.ln = ln
	return nil
}

// uiServer serves the UI from its listener; until the connections are
// open, every request is a 503.
type uiServer struct {
	srv     *http.Server
	handler atomic.Pointer[http.Handler]
	end     context.CancelFunc // ends the requests in flight (event streams)
}

func startUI(c *uiConfig, log zerolog.Logger) (*uiServer, error) {
	if err := c.listen(); err != nil || c.ln == nil {
		return nil, err
	}
	base, end := context.WithCancel(context.Background())
	u := &uiServer{end: end}
	starting := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "runnerd is starting: connecting to NATS, MongoDB and S3", http.StatusServiceUnavailable)
	}))
	u.handler.Store(&starting)
	// No write timeout: the run page's event stream stays open.
	u.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*u.handler.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	go func() {
		if err := u.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("web UI stopped")
		}
	}()
	log.Info().Str("addr", c.ln.Addr().String()).Bool("auth", c.auth.Enabled()).Msg("serving the web UI and /api/v1/")
	return u, nil
}

// serve switches the UI on, through the connections of serve.
func (u *uiServer) serve(c *conns, a httpapi.Auth, log zerolog.Logger) error {
	if u == nil {
		return nil
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	api, err := httpapi.New(httpapi.Config{Client: cl, Blobs: c.blobs, Log: log.With().Str("module", "httpapi").Logger()})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(httpapi.Prefix, api)
	mux.Handle("/", webui.Handler())
	h := httpapi.Protect(mux, a)
	u.handler.Store(&h)
	return nil
}

func (u *uiServer) stop() {
	if u == nil {
		return
	}
	u.end() // event streams never end by themselves
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := u.srv.Shutdown(ctx); err != nil {
		_ = u.srv.Close()
	}
}
