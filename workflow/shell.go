package workflow

import (
	"fmt"
	"strconv"
	"strings"
)

// Templates in `shell:` scripts are never pasted into the script's text:
// a value from a message would become code (the classic injection of CI
// systems). Each ${{ expr }} is instead replaced by a reference to an
// environment variable of the step's process, RUNEXEC_TPL_<n>, that holds
// its value: "${RUNEXEC_TPL_1}" where the template stands unquoted, and
// ${RUNEXEC_TPL_1} inside double quotes or an unquoted here-document. The
// shell expands a parameter once and never parses its value, so the value
// is one word that means exactly itself, whatever it holds: quotes, $(),
// backticks, newlines, ${{ }}.
//
// Where the shell would not expand a parameter — inside single quotes,
// backticks or a quoted here-document — a template cannot be passed this
// way, and the script is refused with a message saying what to write.

// ShellVarPrefix names the environment variables that carry the values of
// a shell script's templates.
const ShellVarPrefix = "RUNEXEC_TPL_"

// ExpandShell rewrites the templates of script into references to
// environment variables and returns the rewritten script and those
// variables (NAME=value), each value evaluated in sc.
func ExpandShell(script string, sc Scope) (string, []string, error) {
	if !strings.Contains(script, "${{") {
		return script, nil, nil
	}
	env := sc.env()
	var vars []string
	out, err := rewriteShell(script, func(n int, src string) error {
		v, err := eval(src, false, env)
		if err != nil {
			return fmt.Errorf("template ${{ %s }}: %w", src, err)
		}
		s := stringify(v)
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("template ${{ %s }}: its value holds a NUL byte, which no environment variable can carry", src)
		}
		vars = append(vars, ShellVarPrefix+strconv.Itoa(n)+"="+s)
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return out, vars, nil
}

// checkShell reports the templates of script that cannot be passed safely
// (see ExpandShell), without evaluating anything.
func checkShell(script string) error {
	if !strings.Contains(script, "${{") {
		return nil
	}
	_, err := rewriteShell(script, func(int, string) error { return nil })
	return err
}

// shell quoting contexts.
type shellCtx int

const (
	ctxCommand  shellCtx = iota // unquoted: the script, or inside $( )
	ctxDouble                   // inside "…"
	ctxSingle                   // inside '…'
	ctxBacktick                 // inside `…`
)

// frame is one level of nesting; depth counts the ( ) open in a command
// frame, so the ) that closes a $( ) is told from a subshell's.
type frame struct {
	ctx   shellCtx
	subst bool // a command frame opened by $(
	depth int
}

// heredoc is a here-document announced on the current line.
type heredoc struct {
	delim     string
	quoted    bool // the delimiter was quoted: the body is literal
	stripTabs bool // <<-
}

// rewriteShell walks script as the shell would quote it and replaces each
// ${{ }} by a reference to RUNEXEC_TPL_<n> (n from 1), calling use for each
// one. It refuses a template where the shell does not expand parameters.
func rewriteShell(script string, use func(n int, src string) error) (string, error) {
	var b strings.Builder
	stack := []frame{{ctx: ctxCommand}}
	var pending []heredoc
	line, n := 1, 0
	top := func() *frame { return &stack[len(stack)-1] }
	pop := func() {
		if len(stack) > 1 {
			stack = stack[:len(stack)-1]
		}
	}
	template := func(i int, inBody, literalBody bool) (int, error) {
		rest := script[i+3:]
		end := strings.Index(rest, "}}")
		if end < 0 {
			return 0, fmt.Errorf("line %d: unterminated ${{ (want ${{ expr }})", line)
		}
		src := strings.TrimSpace(rest[:end])
		if src == "" {
			return 0, fmt.Errorf("line %d: empty ${{ }}", line)
		}
		var where string
		switch {
		case literalBody:
			where = "in a here-document whose delimiter is quoted (<<'EOF'), where nothing is expanded: unquote the delimiter (<<EOF)"
		case !inBody && top().ctx == ctxSingle:
			where = "inside single quotes, where nothing is expanded: end the quotes before it and open them again after it ('…'${{ " + src + " }}'…'), or use double quotes"
		case !inBody && top().ctx == ctxBacktick:
			where = "inside backticks: write $( … ) instead of ` … `"
		}
		if where != "" {
			return 0, fmt.Errorf("line %d: ${{ %s }} %s", line, src, where)
		}
		n++
		if err := use(n, src); err != nil {
			return 0, err
		}
		name := ShellVarPrefix + strconv.Itoa(n)
		if !inBody && top().ctx == ctxCommand {
			b.WriteString(`"${` + name + `}"`)
		} else {
			b.WriteString("${" + name + "}")
		}
		return i + 3 + end + 2, nil
	}

	i := 0
	for i < len(script) {
		c := script[i]
		if strings.HasPrefix(script[i:], "${{") {
			next, err := template(i, false, false)
			if err != nil {
				return "", err
			}
			i = next
			continue
		}
		f := top()
		switch f.ctx {
		case ctxSingle:
			if c == '\'' {
				pop()
			}
		case ctxBacktick:
			switch c {
			case '\\':
				if i+1 < len(script) {
					b.WriteByte(c)
					i++
					c = script[i]
				}
			case '`':
				pop()
			}
		case ctxDouble, ctxCommand:
			// What both contexts share: escapes, and the command
			// substitutions that open a command context of their own.
			switch {
			case c == '\\' && i+1 < len(script):
				b.WriteString(script[i : i+2])
				if script[i+1] == '\n' {
					line++
				}
				i += 2
				continue
			case c == '`':
				stack = append(stack, frame{ctx: ctxBacktick})
				b.WriteByte(c)
				i++
				continue
			case c == '$' && i+1 < len(script) && script[i+1] == '(':
				b.WriteString("$(")
				i += 2
				stack = append(stack, frame{ctx: ctxCommand, subst: true})
				continue
			}
			if f.ctx == ctxDouble {
				if c == '"' {
					pop()
				}
				break
			}
			switch {
			case c == '\'':
				stack = append(stack, frame{ctx: ctxSingle})
			case c == '"':
				stack = append(stack, frame{ctx: ctxDouble})
			case c == '(':
				f.depth++
			case c == ')':
				if f.depth > 0 {
					f.depth--
				} else if f.subst {
					b.WriteByte(c)
					i++
					pop()
					continue
				}
			case c == '#' && wordStart(script, i):
				// A comment: copied to the end of the line, quotes and all.
				end := strings.IndexByte(script[i:], '\n')
				if end < 0 {
					end = len(script) - i
				}
				comment := script[i : i+end]
				if strings.Contains(comment, "${{") {
					comment = strings.ReplaceAll(comment, "${{", "$ {{") // never expanded, never run
				}
				b.WriteString(comment)
				i += end
				continue
			case c == '<' && strings.HasPrefix(script[i:], "<<") && !strings.HasPrefix(script[i:], "<<<"):
				h, next, ok := parseHeredoc(script, i)
				if ok {
					pending = append(pending, h)
					b.WriteString(script[i:next])
					i = next
					continue
				}
			case c == '\n' && len(pending) > 0:
				b.WriteByte(c)
				i++
				line++
				var err error
				if i, err = copyHeredocs(script, i, pending, &b, &line, template); err != nil {
					return "", err
				}
				pending = nil
				continue
			}
		}
		if c == '\n' {
			line++
		}
		b.WriteByte(c)
		i++
	}
	return b.String(), nil
}

// wordStart reports whether script[i] begins a word (where # starts a
// comment).
func wordStart(script string, i int) bool {
	if i == 0 {
		return true
	}
	return strings.IndexByte(" \t\n;&|()", script[i-1]) >= 0
}

// parseHeredoc reads the operator and delimiter of a here-document at
// script[i] ("<<"). next is the index after the delimiter word.
func parseHeredoc(script string, i int) (h heredoc, next int, ok bool) {
	j := i + 2
	if j < len(script) && script[j] == '-' {
		h.stripTabs = true
		j++
	}
	for j < len(script) && (script[j] == ' ' || script[j] == '\t') {
		j++
	}
	var delim strings.Builder
	for j < len(script) && strings.IndexByte(" \t\n;&|<>()", script[j]) < 0 {
		switch c := script[j]; c {
		case '\'', '"':
			h.quoted = true
			end := strings.IndexByte(script[j+1:], c)
			if end < 0 {
				return h, 0, false
			}
			delim.WriteString(script[j+1 : j+1+end])
			j += end + 2
			continue
		case '\\':
			h.quoted = true
			j++
			if j < len(script) {
				delim.WriteByte(script[j])
			}
		default:
			delim.WriteByte(c)
		}
		j++
	}
	if delim.Len() == 0 {
		return h, 0, false
	}
	h.delim = delim.String()
	return h, j, true
}

// copyHeredocs copies the bodies of the here-documents announced on the
// line that just ended, from script[i], rewriting the templates of unquoted
// ones, and returns the index after the last delimiter line.
func copyHeredocs(script string, i int, docs []heredoc, b *strings.Builder, line *int,
	template func(i int, inBody, literalBody bool) (int, error)) (int, error) {
	for _, h := range docs {
		for {
			if i >= len(script) {
				return i, nil // the shell reports the missing delimiter
			}
			end := strings.IndexByte(script[i:], '\n')
			if end < 0 {
				end = len(script) - i
			}
			text := script[i : i+end]
			check := text
			if h.stripTabs {
				check = strings.TrimLeft(text, "\t")
			}
			if check == h.delim {
				b.WriteString(text)
				i += end
				if i < len(script) {
					b.WriteByte('\n')
					i++
					*line++
				}
				break
			}
			for k := 0; k < len(text); {
				if strings.HasPrefix(text[k:], "${{") {
					next, err := template(i+k, true, h.quoted)
					if err != nil {
						return 0, err
					}
					k = next - i
					continue
				}
				if text[k] == '\\' && !h.quoted && k+1 < len(text) {
					b.WriteString(text[k : k+2])
					k += 2
					continue
				}
				b.WriteByte(text[k])
				k++
			}
			i += end
			if i < len(script) {
				b.WriteByte('\n')
				i++
				*line++
			}
		}
	}
	return i, nil
}
