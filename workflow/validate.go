package workflow

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// validID is the syntax of a step id. Ids end up in file names and S3 keys,
// hence the small alphabet. An id with '-' is read in expressions with the
// index form, steps['deploy-prod'], since steps.deploy-prod is a subtraction.
// At most 64 bytes, checked apart: a counted repetition ({0,63}) compiles
// into one copy of its class per count, a cost paid at every runexec's start.
var idSyntax = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func validID(id string) bool { return len(id) <= 64 && idSyntax.MatchString(id) }

// MaxSteps bounds the steps of a workflow. Validation and scheduling are
// quadratic in the worst case, and a DAG this size is a generated mistake.
const MaxSteps = 1000

// MaxWorkflowBytes bounds a workflow's source. With its run's vars and step
// state it must fit one MongoDB document (16 MiB); a workflow above 256 KiB
// travels by reference in S3 rather than in its message.
const MaxWorkflowBytes = 4 << 20

// MaxVarBytes bounds one var's value, MaxVarsBytes all of a run's vars (they
// travel in the message and live in the run document).
const (
	MaxVarBytes  = 256 << 10
	MaxVarsBytes = 1 << 20
)

// MaxOutputBytes bounds one output value of a step, MaxOutputsBytes all of
// a step's outputs, and MaxAnswerBytes one answer to a human step: they
// live in the run document and feed templates.
const (
	MaxOutputBytes  = 64 << 10
	MaxOutputsBytes = 1 << 20
	MaxAnswerBytes  = 64 << 10
)

// MaxRetries bounds a step's retries; more is a typo, not a policy.
const MaxRetries = 100

// Validate checks a workflow that did not come through Parse, such as one
// decoded from a queue message. It returns Errors with every problem, or nil.
// Without the source it cannot give lines, nor tell "timeout: 0" from an
// absent timeout.
func (w *Workflow) Validate() error {
	v := &validator{w: w, failed: map[fieldKey]bool{}}
	v.run()
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

type validator struct {
	w      *Workflow
	file   string
	pos    *positions        // nil when the workflow was not parsed from text
	failed map[fieldKey]bool // fields the decoder already reported
	errs   Errors
	idx    map[string]int
}

func (v *validator) run() {
	w := v.w
	v.idx = w.index()
	if len(w.Steps) == 0 && !v.failed[fieldKey{-1, "steps"}] {
		v.add(-1, "steps", "no steps; a workflow needs at least one")
	}
	if w.MaxParallel < 0 {
		v.add(-1, "max_parallel", "must not be negative, got %d", w.MaxParallel)
	}
	v.positive(-1, "timeout", w.Timeout)
	if w.Network != "" && w.Network != NetworkHost && w.Network != NetworkNone {
		v.add(-1, "network", "want %q or %q, got %q", NetworkHost, NetworkNone, w.Network)
	}
	v.concurrency()
	for _, k := range slices.Sorted(maps.Keys(w.Vars)) {
		if k == "" {
			v.addAt(-1, "vars", v.varLine(k), "a var needs a name")
		}
	}
	if len(w.Steps) > MaxSteps {
		v.add(-1, "steps", "%d steps; at most %d are allowed", len(w.Steps), MaxSteps)
		return
	}
	for i := range w.Steps {
		v.id(i)
	}
	for i := range w.Steps {
		v.step(i)
	}
	for _, c := range w.cycles(v.idx) {
		v.add(c[0], "needs", "cycle: %s", w.cycleString(c))
	}
	for i := range w.Steps {
		v.templates(i)
	}
}

// add records a problem on a field of step i (-1 for the workflow itself),
// at the line of that field.
func (v *validator) add(i int, field, format string, args ...any) {
	v.addAt(i, field, v.fieldLine(i, field), format, args...)
}

func (v *validator) addAt(i int, field string, line int, format string, args ...any) {
	base := field
	if k := strings.IndexAny(base, ".["); k > 0 {
		base = base[:k]
	}
	if v.failed[fieldKey{i, field}] || v.failed[fieldKey{i, base}] {
		return
	}
	e := &Error{File: v.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	if i >= 0 {
		e.Step = stepName(v.w.Steps[i].ID, i)
	}
	v.errs = append(v.errs, e)
}

func (v *validator) stepPos(i int) *stepPos {
	if v.pos == nil || i < 0 || i >= len(v.pos.steps) || v.pos.steps[i] == nil {
		return nil
	}
	return v.pos.steps[i]
}

// fieldLine is the line of the field, else of its step, else 0.
func (v *validator) fieldLine(i int, field string) int {
	if v.pos == nil {
		return 0
	}
	if i < 0 {
		return v.pos.fields[field]
	}
	p := v.stepPos(i)
	if p == nil {
		return 0
	}
	if l, ok := p.fields[field]; ok {
		return l
	}
	return p.line
}

func (v *validator) itemLine(i int, field string, k int) int {
	if p := v.stepPos(i); p != nil && k < len(p.items[field]) {
		return p.items[field][k]
	}
	return v.fieldLine(i, field)
}

func (v *validator) envLine(i int, key string) int {
	if p := v.stepPos(i); p != nil {
		if l, ok := p.env[key]; ok {
			return l
		}
	}
	return v.fieldLine(i, "env")
}

func (v *validator) varLine(name string) int {
	if v.pos == nil {
		return 0
	}
	if l, ok := v.pos.vars[name]; ok {
		return l
	}
	return v.pos.fields["vars"]
}

// present reports whether the field was written in the source; without a
// source, only a non-zero value counts.
func (v *validator) present(i int, field string, nonZero bool) bool {
	if v.pos == nil {
		return nonZero
	}
	if i < 0 {
		_, ok := v.pos.fields[field]
		return ok
	}
	if p := v.stepPos(i); p != nil {
		_, ok := p.fields[field]
		return ok
	}
	return nonZero
}

// positive checks a timeout: when set, it must be above zero.
func (v *validator) positive(i int, field string, d Duration) {
	if v.present(i, field, d != 0) && d <= 0 {
		v.add(i, field, "must be positive when set, got %s", d)
	}
}

func (v *validator) id(i int) {
	s := &v.w.Steps[i]
	switch {
	case s.ID == "":
		v.add(i, "id", "missing; every step needs an id")
	case !validID(s.ID):
		v.add(i, "id", "%q is not a valid id: use letters, digits, '_' and '-', start with a letter or '_', at most 64 characters", s.ID)
	case v.idx[s.ID] != i:
		first := v.idx[s.ID]
		where := ""
		if l := v.fieldLine(first, "id"); l > 0 {
			where = fmt.Sprintf(" at line %d", l)
		}
		v.add(i, "id", "duplicate id %q (also step #%d%s)", s.ID, first+1, where)
	}
}

func (v *validator) step(i int) {
	s := &v.w.Steps[i]
	switch s.Kind {
	case KindCommand:
		v.command(i)
	case KindHuman:
		v.human(i)
	default:
		v.add(i, "kind", "unknown kind %q (want \"human\", or leave it out for a command step)", s.Kind)
	}
	v.positive(i, "timeout", s.Timeout)
	if s.Retries < 0 || s.Retries > MaxRetries {
		v.add(i, "retries", "must be between 0 and %d, got %d", MaxRetries, s.Retries)
	}
	for _, p := range retryProblems(s) {
		v.add(i, "retries", "%s", p)
	}
	for _, p := range secretProblems(s) {
		v.add(i, "secrets", "%s", p)
	}
	if s.Backoff < 0 {
		v.add(i, "backoff", "must not be negative, got %s", s.Backoff)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.addAt(i, "env", v.envLine(i, k), "%q is not a valid variable name (no '=' or NUL, not empty)", k)
		}
	}
	for k, a := range s.Artifacts {
		if msg := artifactProblem(a); msg != "" {
			v.addAt(i, fmt.Sprintf("artifacts[%d]", k), v.itemLine(i, "artifacts", k), "%s", msg)
		}
	}
	v.needs(i)
}

func (v *validator) command(i int) {
	s := &v.w.Steps[i]
	hasRun, hasShell := len(s.Run) > 0, s.Shell != ""
	switch {
	case hasRun && hasShell:
		v.add(i, "shell", "set both run and shell; a command step has exactly one")
	case !hasRun && !hasShell:
		if v.failed[fieldKey{i, "run"}] || v.failed[fieldKey{i, "shell"}] {
			break
		}
		if v.present(i, "run", false) {
			v.add(i, "run", "empty argv; give at least the program to run")
		} else {
			v.add(i, "run", "a command step needs `run` (an argv list) or `shell` (a script)")
		}
	case hasRun && strings.TrimSpace(s.Run[0]) == "":
		v.addAt(i, "run[0]", v.itemLine(i, "run", 0), "empty program name")
	}
	if s.Prompt != "" {
		v.add(i, "prompt", "only a `kind: human` step has a prompt")
	}
}

func (v *validator) human(i int) {
	s := &v.w.Steps[i]
	if strings.TrimSpace(s.Prompt) == "" {
		v.add(i, "prompt", "missing; a human step asks a question")
	}
	if v.present(i, "run", len(s.Run) > 0) {
		v.add(i, "run", "a human step runs no command")
	}
	if v.present(i, "shell", s.Shell != "") {
		v.add(i, "shell", "a human step runs no command")
	}
	if v.present(i, "retries", s.Retries != 0) {
		v.add(i, "retries", "a human step is not retried")
	}
	if v.present(i, "backoff", s.Backoff != 0) {
		v.add(i, "backoff", "a human step is not retried")
	}
	if v.present(i, "artifacts", len(s.Artifacts) > 0) {
		v.add(i, "artifacts", "a human step produces no artifacts")
	}
}

// artifactProblem says why an artifact path or glob is unusable, or "".
// Paths are relative to the workdir and must stay inside it.
func artifactProblem(a string) string {
	switch {
	case strings.TrimSpace(a) == "":
		return "empty path"
	case strings.ContainsRune(a, 0):
		return fmt.Sprintf("%q contains a NUL byte", a)
	case path.IsAbs(a) || strings.HasPrefix(a, `\`):
		return fmt.Sprintf("%q is absolute; artifact paths are relative to the workdir", a)
	}
	if !filepath.IsLocal(a) {
		return fmt.Sprintf("%q leaves the workdir", a)
	}
	if _, err := path.Match(a, ""); err != nil {
		return fmt.Sprintf("%q is not a valid glob: %v", a, err)
	}
	return ""
}

func (v *validator) needs(i int) {
	s := &v.w.Steps[i]
	seen := map[string]bool{}
	for k, n := range s.Needs {
		field, line := fmt.Sprintf("needs[%d]", k), v.itemLine(i, "needs", k)
		_, exists := v.idx[n]
		switch {
		case n == "":
			v.addAt(i, field, line, "empty step id")
		case n == s.ID:
			v.addAt(i, field, line, "a step cannot need itself")
		case !exists:
			v.addAt(i, field, line, "%q names no step%s", n, v.didYouMean(n))
		case seen[n]:
			v.addAt(i, field, line, "%q is listed twice", n)
		}
		seen[n] = true
	}
}

// didYouMean suggests a close step id for a misspelt reference.
func (v *validator) didYouMean(id string) string {
	if len(v.errs) >= maxErrorLines {
		return "" // a flood of bad ids must not cost steps × ids edit distances
	}
	best, bestDist := "", 3
	for _, s := range v.w.Steps {
		if d := editDistance(id, s.ID); d < bestDist && s.ID != "" {
			best, bestDist = s.ID, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// templates checks every templated field of step i: it must compile, read
// only declared vars and steps the step transitively needs, and an `if`
// must be a bool.
func (v *validator) templates(i int) {
	s := &v.w.Steps[i]
	var anc map[string]bool
	ancestors := func() map[string]bool {
		if anc == nil {
			anc = v.w.ancestorsOf(i, v.idx)
		}
		return anc
	}
	check := func(field string, line int, text string) {
		segs, err := segments(text)
		if err != nil {
			v.addAt(i, field, line, "%v", err)
			return
		}
		for _, seg := range segs {
			if seg.isExpr {
				v.expr(i, field, line, "${{ "+seg.text+" }}", seg.text, false, ancestors)
			}
		}
	}
	for k, a := range s.Run {
		check(fmt.Sprintf("run[%d]", k), v.itemLine(i, "run", k), a)
	}
	check("shell", v.fieldLine(i, "shell"), s.Shell)
	if err := checkShell(s.Shell); err != nil {
		// Lines of the script count from the script's first line.
		v.addAt(i, "shell", v.fieldLine(i, "shell"), "script %v", err)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		check("env."+k, v.envLine(i, k), s.Env[k])
	}
	check("prompt", v.fieldLine(i, "prompt"), s.Prompt)
	if v.present(i, "if", s.If != "") {
		line := v.fieldLine(i, "if")
		src, err := conditionSource(s.If)
		if err != nil {
			v.addAt(i, "if", line, "%v", err)
			return
		}
		v.expr(i, "if", line, strconv.Quote(src), src, true, ancestors)
	}
}

// expr checks one expression; shown is how the message quotes it.
func (v *validator) expr(i int, field string, line int, shown, src string, cond bool, ancestors func() map[string]bool) {
	refs, problems, err := references(src)
	if err != nil {
		v.addAt(i, field, line, "%s: %v", shown, err)
		return
	}
	for _, p := range problems {
		v.addAt(i, field, line, "%s: %s", shown, p)
	}
	bad := len(problems) > 0
	for _, r := range refs {
		_, exists := v.idx[r.name]
		switch {
		case !r.steps:
			if _, ok := v.w.Vars[r.name]; !ok {
				v.addAt(i, field, line, "%s: unknown var %q (declared: %s)", shown, r.name, declared(v.w.Vars))
				bad = true
			}
		case !exists:
			v.addAt(i, field, line, "%s: %q names no step%s", shown, r.name, v.didYouMean(r.name))
			bad = true
		case !ancestors()[r.name]:
			v.addAt(i, field, line, "%s: step %q is not in this step's needs, directly or transitively; add it to needs", shown, r.name)
			bad = true
		}
	}
	if bad {
		return // the type checker would only repeat these problems less clearly
	}
	if _, err := compile(src, cond); err != nil {
		v.addAt(i, field, line, "%s: %v", shown, err)
	}
}
