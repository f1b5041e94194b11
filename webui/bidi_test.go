//go:build uitest

// A small WebDriver BiDi client, enough to drive the web UI in Firefox,
// which serves the protocol itself on --remote-debugging-port (no
// geckodriver): commands as JSON over one WebSocket, each with an id its
// answer carries, and events (log entries, user prompts) in between.
package webui

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// bidiCallTimeout bounds every command whose context has no earlier
// deadline: a browser that stops answering fails the call, not the test
// run's timeout.
const bidiCallTimeout = 30 * time.Second

// bidiMessage is any message from the browser: a command's answer
// (type "success" or "error", with its id) or an event (type "event").
type bidiMessage struct {
	Type    string          `json:"type"`
	ID      *int64          `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// bidiError is the browser's refusal of a command.
type bidiError struct {
	Method, Code, Message string
}

func (e *bidiError) Error() string {
	return fmt.Sprintf("bidi %s: %s: %s", e.Method, e.Code, e.Message)
}

type bidiClient struct {
	conn *websocket.Conn

	mu      sync.Mutex
	next    int64
	pending map[int64]chan bidiMessage
	onEvent map[string]func(params json.RawMessage)
	readErr error
	closed  chan struct{} // closed when the read loop ends
}

// dialBiDi opens the WebSocket at url (ws://host:port/session).
func dialBiDi(ctx context.Context, url string) (*bidiClient, error) {
	ctx, cancel := context.WithTimeout(ctx, bidiCallTimeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bidi: dial %s: %w", url, err)
	}
	// Screenshots of a whole page are larger than the default 32 KiB.
	conn.SetReadLimit(64 << 20)
	c := &bidiClient{conn: conn, pending: map[int64]chan bidiMessage{}, onEvent: map[string]func(json.RawMessage){}, closed: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *bidiClient) read() {
	defer close(c.closed)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		var m bidiMessage
		if err := json.Unmarshal(data, &m); err != nil {
			c.mu.Lock()
			c.readErr = fmt.Errorf("bidi: undecodable message %.200q: %w", data, err)
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		if m.Type == "event" {
			h := c.onEvent[m.Method]
			c.mu.Unlock()
			if h != nil {
				h(m.Params)
			}
			continue
		}
		var ch chan bidiMessage
		if m.ID != nil {
			ch = c.pending[*m.ID]
			delete(c.pending, *m.ID)
		}
		c.mu.Unlock()
		if ch != nil {
			ch <- m // buffered: the caller may have given up
		}
	}
}

// handle calls fn with the params of each event named method, on the read
// loop: fn must not wait for a command's answer (start a goroutine).
func (c *bidiClient) handle(method string, fn func(params json.RawMessage)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onEvent[method] = fn
}

// call sends a command and decodes its result into result (when not nil).
// An error answer is a *bidiError naming the method.
func (c *bidiClient) call(ctx context.Context, method string, params, result any) error {
	ctx, cancel := context.WithTimeout(ctx, bidiCallTimeout)
	defer cancel()
	if params == nil {
		params = struct{}{}
	}
	ch := make(chan bidiMessage, 1)
	c.mu.Lock()
	if c.readErr != nil {
		err := c.readErr
		c.mu.Unlock()
		return fmt.Errorf("bidi %s: connection gone: %w", method, err)
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		forget()
		return fmt.Errorf("bidi %s: %w", method, err)
	}
	if err := c.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		forget()
		return fmt.Errorf("bidi %s: send: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Type == "error" {
			return &bidiError{Method: method, Code: m.Error, Message: m.Message}
		}
		if m.Type != "success" {
			return fmt.Errorf("bidi %s: answer of type %q", method, m.Type)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("bidi %s: result %.200s: %w", method, m.Result, err)
			}
		}
		return nil
	case <-c.closed:
		forget()
		c.mu.Lock()
		err := c.readErr
		c.mu.Unlock()
		return fmt.Errorf("bidi %s: connection gone: %w", method, err)
	case <-ctx.Done():
		forget()
		return fmt.Errorf("bidi %s: no answer: %w", method, ctx.Err())
	}
}

func (c *bidiClient) close() error {
	return c.conn.Close(websocket.StatusNormalClosure, "")
}

// remoteValue is a value the page handed back (script.evaluate's result):
// primitives carry their value; a node carries the sharedId that names it
// in later commands.
type remoteValue struct {
	Type     string          `json:"type"`
	Value    json.RawMessage `json:"value"`
	SharedID string          `json:"sharedId"`
}

func (v remoteValue) String() string {
	if len(v.Value) == 0 {
		return v.Type
	}
	return fmt.Sprintf("%s %s", v.Type, v.Value)
}

// scriptResult is the answer of script.evaluate and script.callFunction.
type scriptResult struct {
	Type             string      `json:"type"` // "success" or "exception"
	Result           remoteValue `json:"result"`
	ExceptionDetails struct {
		Text string `json:"text"`
	} `json:"exceptionDetails"`
}

// evaluate runs expr in the context's page, awaiting a promise it gives.
// An exception thrown by the page is an error, as is a refused command
// (such as one that a navigation cut short).
func (c *bidiClient) evaluate(ctx context.Context, browsingContext, expr string) (remoteValue, error) {
	var r scriptResult
	err := c.call(ctx, "script.evaluate", map[string]any{
		"expression":      expr,
		"target":          map[string]any{"context": browsingContext},
		"awaitPromise":    true,
		"resultOwnership": "none",
	}, &r)
	if err != nil {
		return remoteValue{}, err
	}
	if r.Type == "exception" {
		return remoteValue{}, fmt.Errorf("script.evaluate %s: page threw %s", expr, r.ExceptionDetails.Text)
	}
	return r.Result, nil
}

// evalString and evalBool evaluate expr and want a string or a boolean.
func (c *bidiClient) evalString(ctx context.Context, browsingContext, expr string) (string, error) {
	v, err := c.evaluate(ctx, browsingContext, expr)
	if err != nil {
		return "", err
	}
	var s string
	if v.Type != "string" || json.Unmarshal(v.Value, &s) != nil {
		return "", fmt.Errorf("%s gave %s, want a string", expr, v)
	}
	return s, nil
}

func (c *bidiClient) evalBool(ctx context.Context, browsingContext, expr string) (bool, error) {
	v, err := c.evaluate(ctx, browsingContext, expr)
	if err != nil {
		return false, err
	}
	var b bool
	if v.Type != "boolean" || json.Unmarshal(v.Value, &b) != nil {
		return false, fmt.Errorf("%s gave %s, want a boolean", expr, v)
	}
	return b, nil
}

// navigate loads url in the context and waits for its load event.
func (c *bidiClient) navigate(ctx context.Context, browsingContext, url string) error {
	return c.call(ctx, "browsingContext.navigate", map[string]any{"context": browsingContext, "url": url, "wait": "complete"}, nil)
}

// screenshot is a PNG of the context's whole document.
func (c *bidiClient) screenshot(ctx context.Context, browsingContext string) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := c.call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": browsingContext, "origin": "document"}, &r); err != nil {
		return nil, err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, fmt.Errorf("browsingContext.captureScreenshot: %w", err)
	}
	if !strings.HasPrefix(string(png), "\x89PNG") {
		return nil, errors.New("browsingContext.captureScreenshot: not a PNG")
	}
	return png, nil
}

// clickNode clicks the middle of the node as a mouse does (input events
// the browser makes, not a click() called from script).
func (c *bidiClient) clickNode(ctx context.Context, browsingContext, sharedID string) error {
	return c.call(ctx, "input.performActions", map[string]any{
		"context": browsingContext,
		"actions": []any{map[string]any{
			"type": "pointer", "id": "mouse", "parameters": map[string]any{"pointerType": "mouse"},
			"actions": []any{
				map[string]any{"type": "pointerMove", "x": 0, "y": 0, "origin": map[string]any{"type": "element", "element": map[string]any{"sharedId": sharedID}}},
				map[string]any{"type": "pointerDown", "button": 0},
				map[string]any{"type": "pointerUp", "button": 0},
			},
		}},
	}, nil)
}

// typeText presses and releases a key for each character of s, into
// whatever has the focus.
func (c *bidiClient) typeText(ctx context.Context, browsingContext, s string) error {
	var keys []any
	for _, r := range s {
		keys = append(keys, map[string]any{"type": "keyDown", "value": string(r)}, map[string]any{"type": "keyUp", "value": string(r)})
	}
	return c.call(ctx, "input.performActions", map[string]any{
		"context": browsingContext,
		"actions": []any{map[string]any{"type": "key", "id": "keyboard", "actions": keys}},
	}, nil)
}
