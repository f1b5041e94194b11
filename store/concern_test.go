package store

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/wirefault"
)

// Every write carries w:majority, journaled, and every read a read concern
// of majority unless configured otherwise; the server (FerretDB ignores
// both) accepts each combination runnerd offers.
func TestConcernsAreSentAndAccepted(t *testing.T) {
	t.Parallel()
	s, uri := openTestURI(t)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	proxy := wirefault.Start(t, u.Host)
	u.Host = proxy.Addr()
	var mu sync.Mutex
	var seen [][]byte
	proxy.Watch(func(cmd, coll string, msg []byte) {
		if coll == runsCollection || coll == eventsCollection || coll == revisionsCollection {
			mu.Lock()
			seen = append(seen, append([]byte{byte(len(cmd))}, append([]byte(cmd), msg...)...))
			mu.Unlock()
		}
	})
	ctx := context.Background()
	for i, c := range []struct{ w, r, uriOpts string }{
		{"", "", ""},
		{"majority", "linearizable", ""},
		{"1", "local", ""},
		{"", "", "w=1&readConcernLevel=local"}, // the URI's when Config names none
	} {
		q := u.Query()
		if c.uriOpts != "" {
			q, _ = url.ParseQuery(c.uriOpts)
		}
		cu := *u
		cu.RawQuery = q.Encode()
		mu.Lock()
		seen = nil
		mu.Unlock()
		o, err := Open(ctx, Config{URI: cu.String(), Database: s.Database(), WritePath: s.WritePath(), WriteConcern: c.w, ReadConcern: c.r, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("w %q r %q uri %q: open: %v", c.w, c.r, c.uriOpts, err)
		}
		id := "concern" + string(rune('a'+i))
		if err := o.Create(ctx, testRun(id)); err != nil {
			t.Fatalf("w %q r %q: create: %v", c.w, c.r, err)
		}
		if _, err := o.Claim(ctx, id, "r", 1); err != nil {
			t.Fatalf("w %q r %q: claim: %v", c.w, c.r, err)
		}
		if _, err := o.Record(ctx, id, 1, Batch{First: 1, Events: []runnerd.Event{{Type: runnerd.EventLog, Text: "x"}}}); err != nil {
			t.Fatalf("w %q r %q: record: %v", c.w, c.r, err)
		}
		if evs, err := o.Events(ctx, id, 0, 0); err != nil || len(evs) != 1 {
			t.Fatalf("w %q r %q: events: %d %v", c.w, c.r, len(evs), err)
		}
		if _, err := o.List(ctx, ListOptions{}); err != nil {
			t.Fatalf("w %q r %q: list: %v", c.w, c.r, err)
		}
		_ = o.Close(ctx)

		wantW, wantR := []byte("majority"), []byte("majority")
		switch {
		case c.w == "1" || c.uriOpts != "":
			wantW = nil // w: 1, an int32
		}
		if c.r != "" {
			wantR = []byte(c.r)
		} else if c.uriOpts != "" {
			wantR = []byte("local")
		}
		mu.Lock()
		writes, reads := 0, 0
		for _, m := range seen {
			cmd := string(m[1 : 1+m[0]])
			body := m[1+m[0]:]
			switch cmd {
			case "insert", "update", "findAndModify", "delete":
				writes++
				wc := bytes.Index(body, []byte("writeConcern"))
				if wc < 0 || (wantW != nil && !bytes.Contains(body[wc:], wantW)) {
					t.Errorf("w %q uri %q: %s without the write concern: %q", c.w, c.uriOpts, cmd, body)
				}
				if c.uriOpts == "" && !bytes.Contains(body[max(wc, 0):], []byte("j\x00\x01")) {
					t.Errorf("w %q: %s not journaled: %q", c.w, cmd, body)
				}
			case "find":
				reads++
				rc := bytes.Index(body, []byte("readConcern"))
				if rc < 0 || !bytes.Contains(body[rc:], wantR) {
					t.Errorf("r %q uri %q: find without read concern %s: %q", c.r, c.uriOpts, wantR, body)
				}
			}
		}
		mu.Unlock()
		if writes == 0 || reads == 0 {
			t.Fatalf("saw %d writes and %d reads", writes, reads)
		}
	}
	for _, c := range []Config{{WriteConcern: "0"}, {WriteConcern: "most"}, {ReadConcern: "snapshot"}, {URI: "mongodb://127.0.0.1:1/?w=0"}} {
		if c.URI == "" {
			c.URI = uri
		}
		if _, err := Open(ctx, c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("open with %+v: %v, want ErrBadConfig", c, err)
		}
	}
}
