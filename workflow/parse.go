package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse decodes a workflow from YAML or JSON (JSON if the first non-space
// byte is '{') and validates it. name is the file name used in error
// messages. On failure it returns Errors holding every problem at once.
//
// Both formats go through a yaml.Node tree so that unknown fields, type
// errors and validation problems all carry the line they come from.
func Parse(data []byte, name string) (*Workflow, error) {
	if len(data) > MaxWorkflowBytes {
		return nil, Errors{&Error{File: name, Line: 1, Field: "workflow",
			Msg: fmt.Sprintf("%d bytes: the limit is %d (%d MiB); keep large data in files the steps fetch", len(data), MaxWorkflowBytes, MaxWorkflowBytes>>20)}}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 BOM some editors write
	var (
		root *yaml.Node
		err  *Error
	)
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		root, err = jsonTree(data)
	} else {
		root, err = yamlTree(data)
		if err == nil {
			if line := tooDeep(root, 0); line > 0 {
				err = &Error{Line: line, Msg: fmt.Sprintf("nested deeper than %d levels (a workflow needs about 4)", maxJSONDepth)}
			}
		}
	}
	if err != nil {
		err.File = name
		return nil, Errors{err}
	}
	d := &decoder{file: name, failed: map[fieldKey]bool{}}
	w, pos := d.workflow(root)
	errs := d.errs
	if d.values <= maxValues { // else the workflow is truncated: validating it would only add noise
		v := &validator{w: w, file: name, pos: pos, failed: d.failed}
		v.run()
		errs = append(errs, v.errs...)
	}
	if len(errs) > 0 {
		errs.sortByLine()
		return nil, errs
	}
	return w, nil
}

// Load reads and parses the workflow file at path.
func Load(path string) (*Workflow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load workflow: %w", err)
	}
	return Parse(data, path)
}

// yamlLine pulls the line out of a yaml.v3 syntax error ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlTree parses exactly one YAML document into a node tree.
func yamlTree(data []byte) (*yaml.Node, *Error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Msg: "empty workflow"}
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Line: extra.Line, Msg: "more than one YAML document; a workflow file holds one"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(err)
	}
	return &doc, nil
}

func yamlError(err error) *Error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{Msg: fmt.Sprintf("invalid YAML: %v", err)}
}

// maxJSONDepth is far deeper than any valid workflow (about 4 levels); it
// only stops a hostile message from recursing without bound.
const maxJSONDepth = 64

// jsonTree converts a JSON document into the same node tree YAML produces,
// with lines, so both formats share one decoder and one set of messages.
func jsonTree(data []byte) (*yaml.Node, *Error) {
	j := &jsonReader{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	j.dec.UseNumber()
	n, err := j.value(0)
	if err == nil {
		if _, err = j.dec.Token(); err == nil {
			return nil, &Error{Line: j.line(), Msg: "invalid JSON: data after the workflow object"}
		} else if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.DocumentNode, Line: 1, Column: 1, Content: []*yaml.Node{n}}, nil
		}
	}
	var jerr *Error
	if errors.As(err, &jerr) {
		return nil, jerr
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return nil, &Error{Line: lineAt(data, syn.Offset), Msg: "invalid JSON: " + syn.Error()}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return nil, &Error{Line: lineAt(data, int64(len(data))), Msg: "invalid JSON: unexpected end of input"}
	}
	return nil, &Error{Line: j.line(), Msg: fmt.Sprintf("invalid JSON: %v", err)}
}

type jsonReader struct {
	dec  *json.Decoder
	data []byte
}

// line is the line of the last byte consumed, i.e. of the token just read.
func (j *jsonReader) line() int { return lineAt(j.data, j.dec.InputOffset()-1) }

func (j *jsonReader) value(depth int) (*yaml.Node, error) {
	tok, err := j.dec.Token()
	if err != nil {
		return nil, err
	}
	n := &yaml.Node{Line: j.line(), Column: 1}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, &Error{Line: n.Line, Msg: "invalid JSON: nested too deeply"}
		}
		switch t {
		case '{':
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
			for j.dec.More() {
				key, err := j.value(depth + 1) // the decoder guarantees a string here
				if err != nil {
					return nil, err
				}
				val, err := j.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, key, val)
			}
		case '[':
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
			for j.dec.More() {
				val, err := j.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, val)
			}
		default:
			return nil, &Error{Line: n.Line, Msg: fmt.Sprintf("invalid JSON: unexpected %q", rune(t))}
		}
		if _, err := j.dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
	case string:
		n.Kind, n.Tag, n.Value, n.Style = yaml.ScalarNode, "!!str", t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!int", string(t)
		if bytes.ContainsAny([]byte(t), ".eE") {
			n.Tag = "!!float"
		}
	case bool:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!bool", strconv.FormatBool(t)
	case nil:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!null", "null"
	}
	return n, nil
}

// lineAt is the 1-based line holding byte offset off.
func lineAt(data []byte, off int64) int {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// fieldKey names a field of the workflow (step -1) or of one step, so the
// validator can stay quiet about a field the decoder already rejected.
type fieldKey struct {
	step  int
	field string
}

// positions remembers where each field was written. A field present in the
// map was present in the file, which also tells "timeout: 0" from no timeout.
type positions struct {
	fields map[string]int // top-level field -> line of its key
	vars   map[string]int // var name -> line
	steps  []*stepPos
}

type stepPos struct {
	line   int
	fields map[string]int   // field -> line of its key
	items  map[string][]int // run, needs, artifacts -> line of each element
	env    map[string]int   // env key -> line
}

// decoder turns a node tree into a Workflow, recording positions and
// collecting every type problem instead of stopping at the first.
type decoder struct {
	file   string
	errs   Errors
	failed map[fieldKey]bool
	values int // values decoded so far, against maxValues
}

// maxValues bounds the values one Parse decodes. Input size bounds JSON, but
// YAML aliases can repeat a large list many times (a "billion laughs").
const maxValues = 1 << 20

// spend counts one value and reports whether the budget allows it.
func (d *decoder) spend() bool {
	d.values++
	if d.values == maxValues+1 {
		d.fail(-1, "", "", 0, "workflow too large: more than %d values once YAML aliases are expanded", maxValues)
		d.failed[fieldKey{-1, "steps"}] = true
	}
	return d.values <= maxValues
}

func (d *decoder) fail(step int, label, field string, line int, format string, args ...any) {
	d.failed[fieldKey{step, field}] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Step: label, Field: field, Msg: fmt.Sprintf(format, args...)})
}

var (
	workflowFields = []string{"name", "vars", "max_parallel", "timeout", "network", "concurrency", "steps"}
	stepFields     = []string{"id", "kind", "run", "shell", "needs", "env", "timeout", "retries", "retry_rules", "backoff", "if", "artifacts", "prompt", "secrets"}
)

func (d *decoder) workflow(root *yaml.Node) (*Workflow, *positions) {
	w := &Workflow{}
	pos := &positions{fields: map[string]int{}, vars: map[string]int{}}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.fail(-1, "", "", n.Line, "a workflow must be a mapping with at least `steps`, got %s", describe(n))
		d.failed[fieldKey{-1, "steps"}] = true
		return w, pos
	}
	for _, e := range d.entries(n, -1, "", 0) {
		pos.fields[e.key] = e.line
		switch e.key {
		case "name":
			w.Name = d.str(e.val, -1, "", "name")
		case "vars":
			w.Vars = d.strMap(e.val, -1, "", "vars", pos.vars)
		case "max_parallel":
			w.MaxParallel = d.int(e.val, -1, "", "max_parallel")
		case "timeout":
			w.Timeout = d.duration(e.val, -1, "", "timeout")
		case "network":
			w.Network = d.str(e.val, -1, "", "network")
		case "concurrency":
			w.Concurrency = d.concurrency(e.val, e.line)
		case "steps":
			w.Steps, pos.steps = d.steps(e.val)
		default:
			d.fail(-1, "", e.key, e.line, "unknown field%s", suggest(e.key, workflowFields))
		}
	}
	return w, pos
}

func (d *decoder) steps(n *yaml.Node) ([]Step, []*stepPos) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(-1, "", "steps", n.Line, "want a list of steps, got %s", describe(n))
		return nil, nil
	}
	steps := make([]Step, len(n.Content))
	pos := make([]*stepPos, len(n.Content))
	for i, sn := range n.Content {
		if !d.spend() {
			break
		}
		pos[i] = d.step(deref(sn), i, &steps[i])
	}
	return steps, pos
}

func (d *decoder) step(n *yaml.Node, i int, s *Step) *stepPos {
	p := &stepPos{line: n.Line, fields: map[string]int{}, items: map[string][]int{}, env: map[string]int{}}
	label := stepName("", i)
	if n.Kind != yaml.MappingNode {
		d.fail(i, label, "", n.Line, "want a mapping with an `id`, got %s", describe(n))
		d.failed[fieldKey{i, "id"}] = true
		return p
	}
	// The id names the step in every other message, so find it first.
	for k := 0; k+1 < len(n.Content); k += 2 {
		if kn, vn := deref(n.Content[k]), deref(n.Content[k+1]); kn.Value == "id" && vn.Kind == yaml.ScalarNode {
			label = stepName(vn.Value, i)
			break
		}
	}
	entries := d.entries(n, i, label, 0)
	for _, e := range entries {
		if e.key == "id" {
			s.ID = d.str(e.val, i, label, "id")
			label = stepName(s.ID, i)
		}
	}
	for _, e := range entries {
		p.fields[e.key] = e.line
		switch e.key {
		case "id":
		case "kind":
			s.Kind = StepKind(d.str(e.val, i, label, "kind"))
		case "run":
			s.Run = d.strList(e.val, i, label, "run", p)
		case "shell":
			s.Shell = d.str(e.val, i, label, "shell")
		case "needs":
			s.Needs = d.strList(e.val, i, label, "needs", p)
		case "env":
			s.Env = d.strMap(e.val, i, label, "env", p.env)
		case "timeout":
			s.Timeout = d.duration(e.val, i, label, "timeout")
		case "retries":
			d.retries(e.val, i, label, s)
		case "secrets":
			s.Secrets = d.secrets(e.val, i, label)
		case "retry_rules":
			d.retryRulesField(e.val, i, label, s)
		case "backoff":
			s.Backoff = d.duration(e.val, i, label, "backoff")
		case "if":
			s.If = d.str(e.val, i, label, "if")
		case "artifacts":
			s.Artifacts = d.strList(e.val, i, label, "artifacts", p)
		case "prompt":
			s.Prompt = d.str(e.val, i, label, "prompt")
		default:
			d.fail(i, label, e.key, e.line, "unknown field%s", suggest(e.key, stepFields))
		}
	}
	return p
}

// stepName names a step in messages: its id when usable, else its position.
func stepName(id string, i int) string {
	if validID(id) {
		return id
	}
	return "#" + strconv.Itoa(i+1)
}

type entry struct {
	key  string
	line int
	val  *yaml.Node
}

// maxMergeDepth bounds nested YAML merge keys (`<<: *base`).
const maxMergeDepth = 8

// entries lists the key/value pairs of a mapping, expanding YAML merge keys
// (explicit keys win) and reporting duplicate and non-string keys.
func (d *decoder) entries(n *yaml.Node, step int, label string, depth int) []entry {
	var out, merged []entry
	seen := map[string]int{}
	for k := 0; k+1 < len(n.Content) && d.spend(); k += 2 {
		kn, vn := deref(n.Content[k]), n.Content[k+1]
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(vn, step, label, depth)...)
			continue
		}
		if kn.Kind != yaml.ScalarNode {
			d.fail(step, label, "", kn.Line, "a field name must be a string, got %s", describe(kn))
			continue
		}
		if first, dup := seen[kn.Value]; dup {
			d.fail(step, label, kn.Value, kn.Line, "set twice (first at line %d)", first)
			continue
		}
		seen[kn.Value] = kn.Line
		out = append(out, entry{key: kn.Value, line: kn.Line, val: vn})
	}
	for _, e := range merged {
		if _, ok := seen[e.key]; !ok {
			seen[e.key] = e.line
			out = append(out, e)
		}
	}
	return out
}

func (d *decoder) merge(v *yaml.Node, step int, label string, depth int) []entry {
	if depth >= maxMergeDepth {
		d.fail(step, label, "<<", v.Line, "merge keys nested too deeply")
		return nil
	}
	v = deref(v)
	switch v.Kind {
	case yaml.MappingNode:
		return d.entries(v, step, label, depth+1)
	case yaml.SequenceNode:
		var out []entry
		seen := map[string]bool{}
		for _, m := range v.Content { // earlier mappings win, as in YAML's merge spec
			if m = deref(m); m.Kind != yaml.MappingNode {
				d.fail(step, label, "<<", m.Line, "can only merge mappings, got %s", describe(m))
				continue
			}
			for _, e := range d.entries(m, step, label, depth+1) {
				if !seen[e.key] {
					seen[e.key] = true
					out = append(out, e)
				}
			}
		}
		return out
	}
	d.fail(step, label, "<<", v.Line, "can only merge mappings, got %s", describe(v))
	return nil
}

// deref follows YAML aliases (*name) to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	}
	return "nothing"
}

// scalar returns a scalar's text; any scalar is accepted for a string field
// so `run: [sleep, 5]` works, and null is the empty string.
func (d *decoder) scalar(n *yaml.Node, step int, label, field string, want string) (string, bool) {
	n = deref(n)
	if !d.spend() {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(step, label, field, n.Line, "want %s, got %s", want, describe(n))
		return "", false
	}
	if n.ShortTag() == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (d *decoder) str(n *yaml.Node, step int, label, field string) string {
	s, _ := d.scalar(n, step, label, field, "a string")
	return s
}

func (d *decoder) int(n *yaml.Node, step int, label, field string) int {
	n = deref(n)
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.fail(step, label, field, n.Line, "want an integer, got %s", describe(n))
		return 0
	}
	return v
}

func (d *decoder) duration(n *yaml.Node, step int, label, field string) Duration {
	var v Duration
	if err := v.UnmarshalYAML(deref(n)); err != nil {
		d.fail(step, label, field, n.Line, "%v", err)
		return 0
	}
	return v
}

// strList decodes a list of strings, recording each element's line. An
// empty list is nil so that a JSON round trip (omitempty) gives equal values.
func (d *decoder) strList(n *yaml.Node, step int, label, field string, p *stepPos) []string {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if field == "run" {
			hint = " (run is an argv list; use `shell:` for a command line)"
		}
		d.fail(step, label, field, n.Line, "want a list of strings, got %s%s", describe(n), hint)
		return nil
	}
	var out []string
	for k, en := range n.Content {
		s, ok := d.scalar(en, step, label, fmt.Sprintf("%s[%d]", field, k), "a string")
		if !ok {
			d.failed[fieldKey{step, field}] = true
		}
		out = append(out, s)
		p.items[field] = append(p.items[field], deref(en).Line)
	}
	return out
}

// strMap decodes a mapping of strings, recording each key's line. An empty
// mapping is nil, for the same round-trip reason as strList.
func (d *decoder) strMap(n *yaml.Node, step int, label, field string, lines map[string]int) map[string]string {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.fail(step, label, field, n.Line, "want a mapping of strings, got %s", describe(n))
		return nil
	}
	var out map[string]string
	for _, e := range d.entries(n, step, label, 0) {
		s, ok := d.scalar(e.val, step, label, field+"."+e.key, "a string")
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[e.key] = s
		lines[e.key] = e.line
	}
	return out
}

// suggest returns ` (did you mean "steps"?)` for a near miss of a known name.
func suggest(got string, known []string) string {
	best, bestDist := "", 3
	if len(got) >= 5 {
		bestDist = 4
	}
	for _, k := range known {
		if dist := editDistance(got, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// tooDeep returns the line of the first node nested deeper than
// maxJSONDepth, or 0: the same bound as for JSON, for YAML.
func tooDeep(n *yaml.Node, depth int) int {
	if depth > maxJSONDepth {
		return n.Line
	}
	for _, c := range n.Content {
		if line := tooDeep(c, depth+1); line > 0 {
			return line
		}
	}
	return 0
}
