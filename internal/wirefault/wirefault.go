// Package wirefault is a TCP proxy for the MongoDB wire protocol that makes
// the failure a retry has to survive: a command that reaches the server and
// is applied, but whose reply never reaches the client (a timeout or a
// connection lost after the write landed). Tests put it between a store and
// a real server.
package wirefault

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// opMsg is the OP_MSG opcode: the only one whose command the proxy reads;
// others pass untouched.
const opMsg = 2013

// Proxy forwards connections to one server.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu      sync.Mutex
	drop    func(cmd, coll string, msg []byte) bool
	left    int // replies still to drop
	dropped []string
	watch   func(cmd, coll string, msg []byte)
}

// Start listens on a loopback port and forwards to upstream (host:port)
// until t ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, upstream: upstream}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// DropReplies makes the next n commands for which match(command name,
// collection, the whole message body) is true reach the server, then
// swallows their replies and closes the client's connection.
func (p *Proxy) DropReplies(n int, match func(cmd, coll string, msg []byte) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop, p.left = match, n
}

// Watch calls f with every command that passes, before it is forwarded.
func (p *Proxy) Watch(f func(cmd, coll string, msg []byte)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watch = f
}

// Dropped lists the commands whose replies were dropped, as "cmd coll".
func (p *Proxy) Dropped() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.dropped...)
}

func (p *Proxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	var mu sync.Mutex
	doomed := map[int32]bool{} // request ids whose reply is dropped
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			hdr, body, err := readMessage(server)
			if err != nil {
				return
			}
			mu.Lock()
			drop := doomed[int32(binary.LittleEndian.Uint32(hdr[8:]))]
			mu.Unlock()
			if drop {
				client.Close()
				return
			}
			if _, err := client.Write(append(hdr, body...)); err != nil {
				return
			}
		}
	}()
	for {
		hdr, body, err := readMessage(client)
		if err != nil {
			break
		}
		if binary.LittleEndian.Uint32(hdr[12:]) == opMsg {
			if cmd, coll, ok := command(body); ok && p.take(cmd, coll, body) {
				mu.Lock()
				doomed[int32(binary.LittleEndian.Uint32(hdr[4:]))] = true
				mu.Unlock()
			}
		}
		if _, err := server.Write(append(hdr, body...)); err != nil {
			break
		}
	}
	server.Close()
	<-done
}

// take shows the command to the watcher and reports whether its reply is
// to be dropped.
func (p *Proxy) take(cmd, coll string, msg []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watch != nil {
		p.watch(cmd, coll, msg)
	}
	if p.left == 0 || p.drop == nil || !p.drop(cmd, coll, msg) {
		return false
	}
	p.left--
	p.dropped = append(p.dropped, cmd+" "+coll)
	return true
}

func readMessage(r io.Reader) (hdr, body []byte, err error) {
	hdr = make([]byte, 16)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr))
	if n < 16 || n > 64<<20 {
		return nil, nil, errors.New("wirefault: bad message length")
	}
	body = make([]byte, n-16)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, nil, err
	}
	return hdr, body, nil
}

// command reads the command name and its string argument (the collection
// of insert, update, find, ...) from an OP_MSG body: flag bits, then a
// kind-0 section holding the command document, whose first element is the
// command.
func command(body []byte) (cmd, coll string, ok bool) {
	if len(body) < 4+1+4+1 || body[4] != 0 {
		return "", "", false
	}
	doc := body[5:]
	if len(doc) < 5 {
		return "", "", false
	}
	typ := doc[4]
	rest := doc[5:]
	i := 0
	for i < len(rest) && rest[i] != 0 {
		i++
	}
	if i >= len(rest) {
		return "", "", false
	}
	cmd, rest = string(rest[:i]), rest[i+1:]
	if typ == 0x02 && len(rest) >= 4 {
		n := int(binary.LittleEndian.Uint32(rest))
		if n >= 1 && len(rest) >= 4+n {
			coll = string(rest[4 : 4+n-1])
		}
	}
	return cmd, coll, true
}
