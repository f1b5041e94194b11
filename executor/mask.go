package executor

import (
	"bytes"
	"slices"
	"strings"
)

// Secrets are masked in everything a step's output becomes — its log file,
// its log events, its outputs — before it leaves runexec: every occurrence
// of a secret's value is replaced by "***", including one split across two
// writes of the step. Values shorter than minMasked bytes are not masked
// (they would blank out ordinary text); docs/operations.md says so.
const (
	maskText  = "***"
	minMasked = 3
)

// masker masks one output stream. It holds back a tail that could be the
// start of a secret until the next write or the end of the stream.
type masker struct {
	secrets [][]byte // longest first, so the longest match wins
	first   [256]bool
	held    []byte
}

// maskValues returns the values of secrets that are masked, longest first
// so that the longest match wins.
func maskValues(secrets map[string]string) []string {
	var out []string
	for _, v := range secrets {
		if len(v) >= minMasked {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// newMasker masks values (as maskValues returns them) in one stream.
func newMasker(values []string) *masker {
	m := &masker{}
	for _, v := range values {
		m.secrets = append(m.secrets, []byte(v))
		m.first[v[0]] = true
	}
	return m
}

// push takes the next chunk and returns what can be written now.
func (m *masker) push(p []byte) []byte {
	if len(m.secrets) == 0 {
		return p
	}
	buf := append(m.held, p...)
	out, rest := m.mask(buf, false)
	m.held = append([]byte(nil), rest...)
	return out
}

// flush returns what is held at the end of the stream.
func (m *masker) flush() []byte {
	if len(m.held) == 0 {
		return nil
	}
	out, _ := m.mask(m.held, true)
	m.held = nil
	return out
}

// mask replaces the secrets in buf. Unless final, it stops at a tail that
// is a proper prefix of a secret and returns it as rest.
func (m *masker) mask(buf []byte, final bool) (out, rest []byte) {
	var b bytes.Buffer
	i := 0
scan:
	for i < len(buf) {
		if !m.first[buf[i]] {
			j := i + 1
			for j < len(buf) && !m.first[buf[j]] {
				j++
			}
			b.Write(buf[i:j])
			i = j
			continue
		}
		for _, s := range m.secrets {
			if bytes.HasPrefix(buf[i:], s) {
				b.WriteString(maskText)
				i += len(s)
				continue scan
			}
		}
		if !final {
			for _, s := range m.secrets {
				if len(buf)-i < len(s) && bytes.HasPrefix(s, buf[i:]) {
					return b.Bytes(), buf[i:]
				}
			}
		}
		b.WriteByte(buf[i])
		i++
	}
	return b.Bytes(), nil
}

// maskString masks a whole value (an output); values as maskValues
// returns them.
func maskString(v string, values []string) string {
	for _, s := range values {
		v = strings.ReplaceAll(v, s, maskText)
	}
	return v
}
