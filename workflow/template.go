package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Scope is what templates and conditions can read while a run executes.
type Scope struct {
	RunID string
	Vars  map[string]string
	Steps map[string]StepScope
}

// StepScope is what one finished (or waiting) step exposes to later steps.
type StepScope struct {
	Status  string
	Outputs map[string]string
	Answers map[string]string
}

// The expression environment. Field names come from the expr tags, so
// templates read steps.build.outputs.version and run.id.
type (
	stepEnv struct {
		Status  string            `expr:"status"`
		Outputs map[string]string `expr:"outputs"`
		Answers map[string]string `expr:"answers"`
	}
	runEnv struct {
		ID string `expr:"id"`
	}
)

// typeEnv gives the compiler the environment's types, so `vars.x + 1` or an
// `if` that is not a bool fails at validation rather than mid-run.
var typeEnv = map[string]any{
	"vars":  map[string]string{},
	"steps": map[string]stepEnv{},
	"run":   runEnv{},
}

func (sc Scope) env() map[string]any {
	steps := make(map[string]stepEnv, len(sc.Steps))
	for id, s := range sc.Steps {
		steps[id] = stepEnv(s)
	}
	vars := sc.Vars
	if vars == nil {
		vars = map[string]string{}
	}
	return map[string]any{"vars": vars, "steps": steps, "run": runEnv{ID: sc.RunID}}
}

// Expand replaces every ${{ expr }} in s with the string form of its value.
// A map key that is missing (an output never written) renders as "".
func Expand(s string, sc Scope) (string, error) {
	if !strings.Contains(s, "${{") {
		return s, nil
	}
	segs, err := segments(s)
	if err != nil {
		return "", err
	}
	env := sc.env()
	var b strings.Builder
	for _, seg := range segs {
		if !seg.isExpr {
			b.WriteString(seg.text)
			continue
		}
		v, err := eval(seg.text, false, env)
		if err != nil {
			return "", fmt.Errorf("template ${{ %s }}: %w", seg.text, err)
		}
		b.WriteString(stringify(v))
	}
	return b.String(), nil
}

// Condition evaluates an `if`: a bare expression or a single ${{ expr }}.
// The result must be a bool.
func Condition(cond string, sc Scope) (bool, error) {
	src, err := conditionSource(cond)
	if err != nil {
		return false, err
	}
	v, err := eval(src, true, sc.env())
	if err != nil {
		return false, fmt.Errorf("condition %q: %w", src, err)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition %q: result is %T, not a bool", src, v)
	}
	return b, nil
}

// ResolveVars returns the workflow's var defaults with overrides applied. An
// override the workflow does not declare is an error: it is almost always a
// typo, and templates could not read it anyway.
func (w *Workflow) ResolveVars(overrides map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(w.Vars))
	for k, v := range w.Vars {
		out[k] = v
	}
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(overrides)) {
		if _, ok := w.Vars[k]; !ok {
			unknown = append(unknown, strconv.Quote(k))
			continue
		}
		out[k] = overrides[k]
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("resolve vars: %w %s (declared: %s)", ErrUnknownVar, strings.Join(unknown, ", "), declared(w.Vars))
	}
	total := 0
	for _, k := range slices.Sorted(maps.Keys(out)) {
		if n := len(out[k]); n > MaxVarBytes {
			return nil, fmt.Errorf("resolve vars: var %q is %d bytes: the limit is %d (%d KiB): %w", k, n, MaxVarBytes, MaxVarBytes>>10, ErrVarTooLarge)
		}
		total += len(k) + len(out[k])
	}
	if total > MaxVarsBytes {
		return nil, fmt.Errorf("resolve vars: %d bytes in all: the limit is %d (%d MiB): %w", total, MaxVarsBytes, MaxVarsBytes>>20, ErrVarTooLarge)
	}
	return out, nil
}

func declared(vars map[string]string) string {
	if len(vars) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(vars)), ", ")
}

// segment is literal text or the source of one ${{ }} expression.
type segment struct {
	text   string
	isExpr bool
}

// segments splits a template. An expression ends at the first "}}", so a
// literal "}}" inside one must be built another way (e.g. '}' + '}').
func segments(s string) ([]segment, error) {
	var out []segment
	for {
		open := strings.Index(s, "${{")
		if open < 0 {
			if s != "" {
				out = append(out, segment{text: s})
			}
			return out, nil
		}
		if open > 0 {
			out = append(out, segment{text: s[:open]})
		}
		rest := s[open+3:]
		end := strings.Index(rest, "}}")
		if end < 0 {
			return nil, errors.New("unterminated ${{ (want ${{ expr }})")
		}
		src := strings.TrimSpace(rest[:end])
		if src == "" {
			return nil, errors.New("empty ${{ }}")
		}
		out = append(out, segment{text: src, isExpr: true})
		s = rest[end+2:]
	}
}

// conditionSource returns the expression of an `if`.
func conditionSource(cond string) (string, error) {
	t := strings.TrimSpace(cond)
	if strings.Contains(t, "${{") {
		segs, err := segments(t)
		if err != nil {
			return "", err
		}
		if len(segs) != 1 || !segs[0].isExpr {
			return "", fmt.Errorf("condition %q: want a bare expression or a single ${{ expr }}", cond)
		}
		return segs[0].text, nil
	}
	if t == "" {
		return "", errors.New("empty condition")
	}
	return t, nil
}

// compiled is a cached compilation, errors included: the executor evaluates
// the same templates once per step and attempt.
type compiled struct {
	prog *vm.Program
	err  error
}

var (
	programs     sync.Map // "t:"/"c:" + source -> *compiled
	programCount atomic.Int64
)

// maxPrograms bounds the cache: the supervisor validates every workflow it
// receives, and a long-lived process must not keep all their expressions.
const maxPrograms = 4096

func compile(src string, cond bool) (*vm.Program, error) {
	key := "t:" + src
	opts := []expr.Option{expr.Env(typeEnv)}
	if cond {
		key = "c:" + src
		opts = append(opts, expr.AsBool())
	}
	if c, ok := programs.Load(key); ok {
		c := c.(*compiled)
		return c.prog, c.err
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		err = exprError(err)
	}
	if programCount.Load() < maxPrograms {
		if _, loaded := programs.LoadOrStore(key, &compiled{prog, err}); !loaded {
			programCount.Add(1)
		}
	}
	return prog, err
}

func eval(src string, cond bool, env map[string]any) (any, error) {
	prog, err := compile(src, cond)
	if err != nil {
		return nil, err
	}
	v, err := expr.Run(prog, env)
	if err != nil {
		return nil, exprError(err)
	}
	return v, nil
}

// exprError keeps expr's message on one line: its errors carry a multi-line
// source snippet that would break the one-problem-per-line output.
func exprError(err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Column > 0 {
			return fmt.Errorf("%s (column %d)", fe.Message, fe.Column+1)
		}
		return errors.New(fe.Message)
	}
	return err
}

// stringify renders a value the way a shell script wants to see it.
func stringify(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		if math.Abs(v) < 1e21 {
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case time.Duration:
		return v.String()
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case fmt.Stringer:
		return v.String()
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

// reference is one vars.x or steps.x.<field> an expression reads.
type reference struct {
	steps bool   // a step reference, else a var
	name  string // the var name or the step id
}

// references walks the expression's syntax tree and returns the vars and
// steps it reads, plus problems with how it reads them (a step id that is
// not a literal, a step field other than outputs, answers or status). Both
// steps.a and steps['a-b'] are member nodes with a string property.
func references(src string) ([]reference, []string, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, nil, exprError(err)
	}
	var c refCollector
	ast.Walk(&tree.Node, &c)

	inner := map[ast.Node]bool{}
	for _, m := range c.members {
		if parent, ok := unchain(m.Node).(*ast.MemberNode); ok {
			inner[parent] = true
		}
	}
	used := map[ast.Node]bool{}
	var refs []reference
	var problems []string
	for _, m := range c.members {
		if inner[m] {
			continue
		}
		root, props := flatten(m)
		id, ok := root.(*ast.IdentifierNode)
		if !ok || (id.Value != "steps" && id.Value != "vars") {
			continue
		}
		used[id] = true
		name, literal := props[0].(*ast.StringNode)
		switch {
		case id.Value == "vars" && literal:
			refs = append(refs, reference{name: name.Value})
		case id.Value == "vars":
			// vars[expr]: harmless, a missing var reads as "".
		case !literal:
			problems = append(problems, "a step must be named literally, as in steps.build or steps['my-step']")
		default:
			refs = append(refs, reference{steps: true, name: name.Value})
			if len(props) < 2 {
				problems = append(problems, fmt.Sprintf("steps.%s: want steps.%s.outputs.<key>, .answers.<key> or .status", name.Value, name.Value))
				break
			}
			f, ok := props[1].(*ast.StringNode)
			if !ok || (f.Value != "outputs" && f.Value != "answers" && f.Value != "status") {
				problems = append(problems, fmt.Sprintf("steps.%s: only .outputs.<key>, .answers.<key> and .status can be read", name.Value))
			}
		}
	}
	for _, id := range c.idents {
		if id.Value == "steps" && !used[id] {
			problems = append(problems, "`steps` must be followed by a step id, as in steps.build.outputs.version")
		}
		if id.Value == "secrets" {
			problems = append(problems, "secrets never reach templates: declare it on the step (secrets: [NAME]) and read $NAME, or the file it names")
		}
	}
	return refs, problems, nil
}

type refCollector struct {
	members []*ast.MemberNode
	idents  []*ast.IdentifierNode
}

func (c *refCollector) Visit(n *ast.Node) {
	switch n := (*n).(type) {
	case *ast.MemberNode:
		c.members = append(c.members, n)
	case *ast.IdentifierNode:
		c.idents = append(c.idents, n)
	}
}

// unchain looks through the wrapper ?. puts around a member chain.
func unchain(n ast.Node) ast.Node {
	for {
		c, ok := n.(*ast.ChainNode)
		if !ok {
			return n
		}
		n = c.Node
	}
}

// flatten turns a.b.c into root a and properties [b, c].
func flatten(m *ast.MemberNode) (ast.Node, []ast.Node) {
	var props []ast.Node
	var n ast.Node = m
	for {
		mn, ok := unchain(n).(*ast.MemberNode)
		if !ok {
			break
		}
		props = append(props, mn.Property)
		n = mn.Node
	}
	for a, b := 0, len(props)-1; a < b; a, b = a+1, b-1 {
		props[a], props[b] = props[b], props[a]
	}
	return unchain(n), props
}
