package workflow

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid matches every validation failure with errors.Is, so the
// supervisor can map a bad workflow to runnerd.ReasonInvalidWorkflow without
// caring which problem it was.
var ErrInvalid = errors.New("invalid workflow")

// ErrUnknownVar is returned by ResolveVars for an override the workflow does
// not declare: a typo in a run's vars must not be silently ignored.
var ErrUnknownVar = errors.New("unknown var")

// ErrVarTooLarge means a var's value, or all vars together, pass the limits
// (MaxVarBytes, MaxVarsBytes).
var ErrVarTooLarge = errors.New("vars too large")

// Error is one problem found in a workflow. Line is 0 when unknown (a
// workflow decoded from a queue message rather than parsed from a file).
type Error struct {
	File  string
	Line  int
	Step  string // the step id, or "#N" (1-based position) when the step has no usable id
	Field string // e.g. "needs", "env.GOFLAGS", "run[2]"
	Msg   string
}

// Error renders e.g. `wf.yaml:12: step "test": needs: "fetch2" names no step`.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Step != "" {
		if strings.HasPrefix(e.Step, "#") {
			fmt.Fprintf(&b, "step %s: ", e.Step)
		} else {
			fmt.Fprintf(&b, "step %q: ", e.Step)
		}
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes every Error match ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Errors holds every problem found at once, so a user fixes a file in one
// round instead of one error per attempt.
type Errors []*Error

// maxErrorLines bounds the rendered message: a garbage file can produce
// thousands of problems and the message ends up in a log line and in MongoDB.
const maxErrorLines = 50

// Error renders one line per problem.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i == maxErrorLines {
			fmt.Fprintf(&b, "\n... and %d more problems", len(es)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Is makes Errors match ErrInvalid.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// sortByLine orders problems as they appear in the file; problems without a
// line keep their relative order and come first.
func (es Errors) sortByLine() {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
}
