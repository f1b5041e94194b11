package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/runnerd/runnerd/workflow"
)

// ParseVars reads the k=v items of a repeatable --var flag.
func ParseVars(flagName string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || k == "" {
			return nil, Usagef("--%s %q: want key=value", flagName, it)
		}
		out[k] = v
	}
	return out, nil
}

// ParseAnswers reads the step.key=value items of --answer, each value at
// most workflow.MaxAnswerBytes.
func ParseAnswers(items []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, it := range items {
		kv, v, ok := strings.Cut(it, "=")
		step, key, ok2 := strings.Cut(kv, ".")
		if !ok || !ok2 || step == "" || key == "" {
			return nil, Usagef("--answer %q: want step.key=value", it)
		}
		if len(v) > workflow.MaxAnswerBytes {
			return nil, Usagef("--answer %s.%s is %d bytes: the limit is %d (%d KiB)", step, key, len(v), workflow.MaxAnswerBytes, workflow.MaxAnswerBytes>>10)
		}
		if out[step] == nil {
			out[step] = map[string]string{}
		}
		out[step][key] = v
	}
	return out, nil
}

// LoadWorkflow loads a workflow file, or reads one from stdin for "-".
func LoadWorkflow(file string, stdin io.Reader) (*workflow.Workflow, error) {
	if file != "-" {
		return workflow.Load(file)
	}
	// One byte past the limit, so Parse still reports the size.
	data, err := io.ReadAll(io.LimitReader(stdin, workflow.MaxWorkflowBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the workflow from stdin: %w", err)
	}
	return workflow.Parse(data, "<stdin>")
}

// LineTail keeps the last Max complete lines of a stream of text chunks,
// plus the line still being written.
type LineTail struct {
	Max     int
	buf     []string
	partial string
}

func (t *LineTail) Write(text string) {
	parts := strings.Split(t.partial+text, "\n")
	t.partial = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		t.buf = append(t.buf, l)
		if len(t.buf) > t.Max {
			t.buf = t.buf[len(t.buf)-t.Max:]
		}
	}
}

// Lines are the kept lines, oldest first.
func (t *LineTail) Lines() []string {
	out := append([]string(nil), t.buf...)
	if t.partial != "" {
		out = append(out, t.partial)
	}
	if len(out) > t.Max {
		out = out[len(out)-t.Max:]
	}
	return out
}
