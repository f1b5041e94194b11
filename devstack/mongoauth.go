package devstack

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/xdg-go/scram"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// mongoAuth is the authenticating front of the embedded FerretDB.
//
// FerretDB v1's embeddable package cannot authenticate: without its
// experimental "new auth" (which ferretdb.Config cannot turn on) it accepts
// any PLAIN credentials and hands them to the backend, and the SQLite
// backend ignores them. So FerretDB listens only on a loopback TLS port
// that demands a client certificate of a CA made at start (its key is
// dropped once the two certificates are signed), and clients reach it
// through this listener, which:
//
//   - before authentication, answers only the handshake (hello/isMaster,
//     forwarded with speculative authentication and compression removed and
//     SCRAM advertised), buildInfo and ping; every other command gets
//     Unauthorized (13);
//   - runs the SCRAM-SHA-256 (or SCRAM-SHA-1) conversation of saslStart and
//     saslContinue itself, for the stack's one user;
//   - once the conversation succeeded, copies bytes both ways unchanged.
type mongoAuth struct {
	ln       net.Listener
	upstream string      // FerretDB's TLS address
	tlsConf  *tls.Config // our client certificate and FerretDB's CA
	scram256 *scram.Server
	scram1   *scram.Server
	log      zerolog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the connections

	accepting sync.WaitGroup // the accept loop
}

// scramIterations is the PBKDF2 iteration count of the stored keys: the
// drivers' minimum. The password is 128 random bits, so more iterations
// would only slow every new connection down.
const scramIterations = 4096

// Wire protocol opcodes and OP_MSG flags.
const (
	opReply = 1
	opQuery = 2004
	opMsg   = 2013

	msgChecksumPresent = 1 << 0
	msgMoreToCome      = 1 << 1
	msgExhaustAllowed  = 1 << 16

	maxWireMessage = 48 << 20 // MongoDB's maxMessageSizeBytes
)

// MongoDB error codes the front replies with.
const (
	codeUnauthorized         = 13
	codeAuthenticationFailed = 18
)

func newMongoAuth(ln net.Listener, upstream string, tlsConf *tls.Config, user, password string, log zerolog.Logger) (*mongoAuth, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	kf := scram.KeyFactors{Salt: string(salt), Iters: scramIterations}
	c256, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		return nil, fmt.Errorf("devstack: mongo auth: %w", err)
	}
	// SCRAM-SHA-1 in MongoDB hashes hex(md5(user:mongo:password)), unprepped.
	digest := md5.Sum([]byte(user + ":mongo:" + password))
	c1, err := scram.SHA1.NewClientUnprepped(user, hex.EncodeToString(digest[:]), "")
	if err != nil {
		return nil, fmt.Errorf("devstack: mongo auth: %w", err)
	}
	lookup := func(stored scram.StoredCredentials) scram.CredentialLookup {
		return func(u string) (scram.StoredCredentials, error) {
			if u != user {
				return scram.StoredCredentials{}, fmt.Errorf("unknown user %q", u)
			}
			return stored, nil
		}
	}
	a := &mongoAuth{ln: ln, upstream: upstream, tlsConf: tlsConf, log: log, conns: map[net.Conn]struct{}{}}
	creds256, err := c256.GetStoredCredentialsWithError(kf)
	if err != nil {
		return nil, fmt.Errorf("devstack: mongo auth: %w", err)
	}
	creds1, err := c1.GetStoredCredentialsWithError(kf)
	if err != nil {
		return nil, fmt.Errorf("devstack: mongo auth: %w", err)
	}
	if a.scram256, err = scram.SHA256.NewServer(lookup(creds256)); err != nil {
		return nil, fmt.Errorf("devstack: mongo auth: %w", err)
	}
	if a.scram1, err = scram.SHA1.NewServer(lookup(creds1)); err != nil {
		return nil, fmt.Errorf("devstack: mongo auth: %w", err)
	}
	return a, nil
}

// start serves clients from a goroutine that close stops and awaits.
func (a *mongoAuth) start() { a.accepting.Go(a.serve) }

// serve accepts clients until close.
func (a *mongoAuth) serve() {
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		if !a.track(c) {
			c.Close()
			return
		}
		a.wg.Go(func() {
			defer a.untrack(c)
			if err := a.handle(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				a.log.Debug().Err(err).Str("client", c.RemoteAddr().String()).Msg("mongodb client connection ended")
			}
		})
	}
}

func (a *mongoAuth) track(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.conns[c] = struct{}{}
	return true
}

func (a *mongoAuth) untrack(c net.Conn) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
	c.Close()
}

// close stops accepting, closes every client connection and waits for
// their goroutines.
func (a *mongoAuth) close() {
	a.mu.Lock()
	a.closed = true
	_ = a.ln.Close()
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
	a.accepting.Wait() // then no connection is added to wg
	a.wg.Wait()
}

// session is one client connection and its FerretDB connection.
type session struct {
	a      *mongoAuth
	client net.Conn
	cr     *bufio.Reader
	up     net.Conn
	ur     *bufio.Reader

	conv      *scram.ServerConversation
	skipEmpty bool
	authed    bool
}

var requestIDs atomic.Int32

func (a *mongoAuth) handle(client net.Conn) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	up, err := tls.DialWithDialer(d, "tcp", a.upstream, a.tlsConf)
	if err != nil {
		return fmt.Errorf("connect to ferretdb: %w", err)
	}
	a.mu.Lock()
	a.conns[up] = struct{}{} // closed with the rest on close
	a.mu.Unlock()
	defer a.untrack(up)
	s := &session{a: a, client: client, cr: bufio.NewReader(client), up: up, ur: bufio.NewReader(up)}
	for !s.authed {
		m, err := readWire(s.cr)
		if err != nil {
			return err
		}
		if err := s.preAuth(m); err != nil {
			return err
		}
	}
	// Authenticated: FerretDB serves the rest unchanged.
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, s.cr); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, s.ur); done <- struct{}{} }()
	<-done
	return nil
}

// wireMsg is one message of the wire protocol.
type wireMsg struct {
	requestID, responseTo, opCode int32
	body                          []byte // after the 16-byte header
}

func readWire(r *bufio.Reader) (*wireMsg, error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int32(binary.LittleEndian.Uint32(h[0:]))
	if n < 16 || n > maxWireMessage {
		return nil, fmt.Errorf("wire message of %d bytes", n)
	}
	m := &wireMsg{
		requestID:  int32(binary.LittleEndian.Uint32(h[4:])),
		responseTo: int32(binary.LittleEndian.Uint32(h[8:])),
		opCode:     int32(binary.LittleEndian.Uint32(h[12:])),
		body:       make([]byte, n-16),
	}
	if _, err := io.ReadFull(r, m.body); err != nil {
		return nil, err
	}
	return m, nil
}

func writeWire(w io.Writer, m *wireMsg) error {
	b := make([]byte, 16, 16+len(m.body))
	binary.LittleEndian.PutUint32(b[0:], uint32(16+len(m.body)))
	binary.LittleEndian.PutUint32(b[4:], uint32(m.requestID))
	binary.LittleEndian.PutUint32(b[8:], uint32(m.responseTo))
	binary.LittleEndian.PutUint32(b[12:], uint32(m.opCode))
	_, err := w.Write(append(b, m.body...))
	return err
}

// command is a request's command document and how to rebuild the request
// or reply to it in the same form (OP_MSG, or a legacy OP_QUERY).
type command struct {
	msg   *wireMsg
	doc   bson.Raw
	name  string
	query *legacyQuery // set for OP_QUERY
	flags uint32       // OP_MSG flags
}

type legacyQuery struct {
	flags      int32
	collection string
	skip, ret  int32
}

func parseCommand(m *wireMsg) (*command, error) {
	c := &command{msg: m}
	b := m.body
	switch m.opCode {
	case opMsg:
		if len(b) < 5 {
			return nil, errors.New("short OP_MSG")
		}
		c.flags = binary.LittleEndian.Uint32(b)
		b = b[4:]
		if c.flags&msgChecksumPresent != 0 {
			if len(b) < 4 {
				return nil, errors.New("short OP_MSG")
			}
			b = b[:len(b)-4]
		}
		// One body section (kind 0) and any document sequences (kind 1,
		// e.g. an insert's documents), which are only skipped here: no
		// command that carries them is forwarded before authentication.
		for len(b) > 0 {
			kind := b[0]
			b = b[1:]
			switch kind {
			case 0:
				doc, rest, err := readDoc(b)
				if err != nil {
					return nil, err
				}
				if c.doc != nil {
					return nil, errors.New("OP_MSG with two body sections")
				}
				c.doc, b = doc, rest
			case 1:
				if len(b) < 4 {
					return nil, errors.New("short OP_MSG section")
				}
				n := int(binary.LittleEndian.Uint32(b))
				if n < 4 || n > len(b) {
					return nil, errors.New("bad OP_MSG section length")
				}
				b = b[n:]
			default:
				return nil, fmt.Errorf("OP_MSG section kind %d", kind)
			}
		}
		if c.doc == nil {
			return nil, errors.New("OP_MSG without a body section")
		}
	case opQuery:
		if len(b) < 4 {
			return nil, errors.New("short OP_QUERY")
		}
		q := &legacyQuery{flags: int32(binary.LittleEndian.Uint32(b))}
		b = b[4:]
		end := indexByte(b, 0)
		if end < 0 || len(b) < end+9 {
			return nil, errors.New("short OP_QUERY")
		}
		q.collection = string(b[:end])
		b = b[end+1:]
		q.skip, q.ret = int32(binary.LittleEndian.Uint32(b)), int32(binary.LittleEndian.Uint32(b[4:]))
		doc, _, err := readDoc(b[8:])
		if err != nil {
			return nil, err
		}
		c.doc, c.query = doc, q
	default:
		return nil, fmt.Errorf("opcode %d before authentication", m.opCode)
	}
	el, err := c.doc.IndexErr(0)
	if err != nil {
		return nil, fmt.Errorf("command document: %w", err)
	}
	c.name = el.Key()
	return c, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func readDoc(b []byte) (bson.Raw, []byte, error) {
	if len(b) < 5 {
		return nil, nil, errors.New("short BSON document")
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < 5 || n > len(b) {
		return nil, nil, errors.New("bad BSON document length")
	}
	doc := bson.Raw(b[:n])
	if err := doc.Validate(); err != nil {
		return nil, nil, err
	}
	return doc, b[n:], nil
}

// rebuild returns c's request carrying doc instead, without a checksum and
// without exhaustAllowed (no streamed replies before authentication).
func (c *command) rebuild(doc []byte) *wireMsg {
	m := &wireMsg{requestID: c.msg.requestID, responseTo: c.msg.responseTo, opCode: c.msg.opCode}
	if c.query != nil {
		b := binary.LittleEndian.AppendUint32(nil, uint32(c.query.flags))
		b = append(append(b, c.query.collection...), 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(c.query.skip))
		b = binary.LittleEndian.AppendUint32(b, uint32(c.query.ret))
		m.body = append(b, doc...)
		return m
	}
	flags := c.flags &^ (msgChecksumPresent | msgExhaustAllowed)
	b := binary.LittleEndian.AppendUint32(nil, flags)
	m.body = append(append(b, 0), doc...)
	return m
}

// reply is our own answer to c, in the form c came in.
func (c *command) reply(doc []byte) *wireMsg {
	m := &wireMsg{requestID: requestIDs.Add(1), responseTo: c.msg.requestID}
	if c.query != nil {
		m.opCode = opReply
		b := make([]byte, 20)
		binary.LittleEndian.PutUint32(b[16:], 1) // numberReturned
		m.body = append(b, doc...)
		return m
	}
	m.opCode = opMsg
	m.body = append([]byte{0, 0, 0, 0, 0}, doc...)
	return m
}

func (s *session) preAuth(m *wireMsg) error {
	c, err := parseCommand(m)
	if err != nil {
		return err
	}
	if c.query == nil && c.flags&msgMoreToCome != 0 {
		return errors.New("moreToCome before authentication")
	}
	switch c.name {
	case "hello", "isMaster", "ismaster":
		return s.hello(c)
	case "buildInfo", "buildinfo", "ping":
		return s.forward(c, c.doc, nil)
	case "saslStart":
		return s.saslStart(c)
	case "saslContinue":
		return s.saslContinue(c)
	}
	return s.send(c, errorDoc(codeUnauthorized, "Unauthorized", fmt.Sprintf("command %s requires authentication", c.name)))
}

// hello forwards the handshake without speculative authentication (the
// driver then authenticates with saslStart) or compression (every message
// before authentication must stay readable here), and advertises SCRAM.
func (s *session) hello(c *command) error {
	var d bson.D
	if err := bson.Unmarshal(c.doc, &d); err != nil {
		return err
	}
	askedMechs := false
	kept := d[:0]
	for _, e := range d {
		switch e.Key {
		case "speculativeAuthenticate", "compression":
			continue
		case "saslSupportedMechs":
			askedMechs = true
		}
		kept = append(kept, e)
	}
	doc, err := bson.Marshal(kept)
	if err != nil {
		return err
	}
	return s.forward(c, doc, func(reply bson.D) bson.D {
		out := reply[:0]
		for _, e := range reply {
			if e.Key != "saslSupportedMechs" {
				out = append(out, e)
			}
		}
		if askedMechs {
			out = append(out, bson.E{Key: "saslSupportedMechs", Value: bson.A{"SCRAM-SHA-256", "SCRAM-SHA-1"}})
		}
		return out
	})
}

// forward sends c (with doc) to FerretDB and its reply, changed by edit
// when set, to the client.
func (s *session) forward(c *command, doc []byte, edit func(bson.D) bson.D) error {
	if err := writeWire(s.up, c.rebuild(doc)); err != nil {
		return err
	}
	r, err := readWire(s.ur)
	if err != nil {
		return err
	}
	if edit != nil {
		if err := editReply(r, edit); err != nil {
			return err
		}
	}
	return writeWire(s.client, r)
}

func editReply(r *wireMsg, edit func(bson.D) bson.D) error {
	var off int
	switch r.opCode {
	case opReply:
		off = 20
	case opMsg:
		off = 5
		if len(r.body) > 4 && binary.LittleEndian.Uint32(r.body)&msgChecksumPresent != 0 {
			binary.LittleEndian.PutUint32(r.body, binary.LittleEndian.Uint32(r.body)&^msgChecksumPresent)
			r.body = r.body[:len(r.body)-4]
		}
	default:
		return fmt.Errorf("ferretdb replied with opcode %d", r.opCode)
	}
	if len(r.body) < off {
		return errors.New("short reply from ferretdb")
	}
	raw, rest, err := readDoc(r.body[off:])
	if err != nil {
		return err
	}
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		return err
	}
	doc, err := bson.Marshal(edit(d))
	if err != nil {
		return err
	}
	r.body = append(append(append([]byte(nil), r.body[:off]...), doc...), rest...)
	return nil
}

func (s *session) send(c *command, doc bson.D) error {
	b, err := bson.Marshal(doc)
	if err != nil {
		return err
	}
	return writeWire(s.client, c.reply(b))
}

func errorDoc(code int32, name, msg string) bson.D {
	return bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: msg}, {Key: "code", Value: code}, {Key: "codeName", Value: name}}
}

func (s *session) authFailed(c *command, why error) error {
	s.a.log.Warn().Err(why).Str("client", s.client.RemoteAddr().String()).Msg("mongodb authentication failed")
	s.conv = nil
	return s.send(c, errorDoc(codeAuthenticationFailed, "AuthenticationFailed", "Authentication failed."))
}

func saslReply(payload string, done bool) bson.D {
	return bson.D{
		{Key: "conversationId", Value: int32(1)},
		{Key: "done", Value: done},
		{Key: "payload", Value: bson.Binary{Data: []byte(payload)}},
		{Key: "ok", Value: 1.0},
	}
}

func (s *session) saslStart(c *command) error {
	var req struct {
		Mechanism string      `bson:"mechanism"`
		Payload   bson.Binary `bson:"payload"`
		Options   struct {
			SkipEmptyExchange bool `bson:"skipEmptyExchange"`
		} `bson:"options"`
	}
	if err := bson.Unmarshal(c.doc, &req); err != nil {
		return s.authFailed(c, err)
	}
	switch req.Mechanism {
	case "SCRAM-SHA-256":
		s.conv = s.a.scram256.NewConversation()
	case "SCRAM-SHA-1":
		s.conv = s.a.scram1.NewConversation()
	default:
		return s.authFailed(c, fmt.Errorf("mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-1", req.Mechanism))
	}
	s.skipEmpty = req.Options.SkipEmptyExchange
	out, err := s.conv.Step(string(req.Payload.Data))
	if err != nil {
		return s.authFailed(c, err)
	}
	return s.send(c, saslReply(out, false))
}

func (s *session) saslContinue(c *command) error {
	var req struct {
		Payload bson.Binary `bson:"payload"`
	}
	if err := bson.Unmarshal(c.doc, &req); err != nil || s.conv == nil {
		return s.authFailed(c, fmt.Errorf("saslContinue without a conversation (%v)", err))
	}
	if s.conv.Done() {
		// The empty last exchange of a client that did not skip it.
		if !s.conv.Valid() {
			return s.authFailed(c, errors.New("invalid conversation"))
		}
		s.authed = true
		return s.send(c, saslReply("", true))
	}
	out, err := s.conv.Step(string(req.Payload.Data))
	if err != nil || !s.conv.Done() || !s.conv.Valid() {
		return s.authFailed(c, fmt.Errorf("proof refused: %v", err))
	}
	if !s.skipEmpty {
		return s.send(c, saslReply(out, false))
	}
	s.authed = true
	return s.send(c, saslReply(out, true))
}
