package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/runnerd/runnerd"
)

// TailLines is how much of a failed step's log a progress shows when the
// step's output was not already streamed.
const TailLines = 20

// ProgressOptions say how a Progress renders.
type ProgressOptions struct {
	// Logs streams step output live, each line prefixed by its step (as
	// docker compose prefixes services).
	Logs bool
	// Terminal keeps an updating line at the bottom (elapsed time, the
	// steps running); Colour colours labels and step prefixes.
	Terminal, Colour bool
	// Tail returns the last lines of a failed step's log (runexec reads
	// its log file); nil keeps them from the log events.
	Tail func(step string) []string
	// Steps are the run's step ids: live output's prefixes are padded to
	// the longest, as docker compose pads its services'.
	Steps []string
}

// PrefixWidth is the width step prefixes are padded to: the longest id.
func PrefixWidth(steps []string) int {
	w := 0
	for _, s := range steps {
		w = max(w, len(s))
	}
	return w
}

// Prefix is a line's step prefix, padded to width: "build  |".
func Prefix(step string, width int) string { return fmt.Sprintf("%-*s |", width, step) }

// Progress renders a run's events for people: one line per step start and
// finish, live output when asked, the tail of a failed step's log, and on
// a terminal a status line redrawn in place. The one renderer of runexec
// run and runnerd submit/resume/retry --wait. Safe for concurrent use.
type Progress struct {
	mu      sync.Mutex
	w       io.Writer
	opt     ProgressOptions
	start   time.Time
	tails   map[string]*LineTail // steps running now, when opt.Tail is nil
	lines   StepLines            // the steps' output, cut into whole lines
	running []string             // steps running now, in start order
	colours map[string]string    // step → prefix colour
	note    string               // what the run waits on, shown in the status line
	status  bool                 // a status line is on screen
	stop    chan struct{}
	done    sync.WaitGroup
}

// NewProgress starts a Progress on w; Close stops its status line.
func NewProgress(w io.Writer, opt ProgressOptions) *Progress {
	p := &Progress{w: w, opt: opt, start: time.Now(), tails: map[string]*LineTail{},
		colours: map[string]string{}, stop: make(chan struct{})}
	if opt.Terminal {
		p.done.Add(1)
		go p.tick()
	}
	return p
}

// tick redraws the status line while nothing else is printed.
func (p *Progress) tick() {
	defer p.done.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.drawStatus()
			p.mu.Unlock()
		}
	}
}

// Close ends the status line; the summary can follow.
func (p *Progress) Close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearStatus()
	for _, s := range p.running {
		p.flushLine(s)
	}
}

// Elapsed is the time since the progress started.
func (p *Progress) Elapsed() time.Duration { return time.Since(p.start) }

// Note prints a line about the run (queued, where it waits) and keeps it
// in the status line until the next event.
func (p *Progress) Note(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if line == p.note {
		return
	}
	p.note = line
	p.println(p.stamp() + " " + line)
}

const (
	reset  = "\x1b[0m"
	bold   = "\x1b[1m"
	dim    = "\x1b[2m"
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
)

// prefix colours cycle as docker compose's do.
var prefixColours = []string{"\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[96m", "\x1b[93m", "\x1b[92m"}

func (p *Progress) paint(colour, s string) string {
	if !p.opt.Colour || colour == "" {
		return s
	}
	return colour + s + reset
}

func (p *Progress) stamp() string {
	return p.paint(dim, fmt.Sprintf("[%7.2fs]", time.Since(p.start).Seconds()))
}

// Event renders one event of the run.
func (p *Progress) Event(e runnerd.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.note = ""
	at := p.stamp()
	switch e.Type {
	case runnerd.EventRunStarted:
		p.println(at + " run started")
	case runnerd.EventStepStarted:
		if p.opt.Tail == nil {
			p.tails[e.Step] = &LineTail{Max: TailLines}
		}
		if _, ok := p.colours[e.Step]; !ok {
			p.colours[e.Step] = prefixColours[len(p.colours)%len(prefixColours)]
		}
		p.running = append(p.running, e.Step)
		line := fmt.Sprintf("%s %s %s", at, p.paint(bold, "start "), e.Step)
		if e.Attempt > 1 {
			line += fmt.Sprintf(" (attempt %d", e.Attempt)
			if e.Message != "" {
				line += "; " + e.Message
			}
			line += ")"
		}
		p.println(line)
	case runnerd.EventLog:
		if t := p.tails[e.Step]; t != nil {
			t.Write(e.Text)
		}
		if p.opt.Logs {
			p.output(e.Step, e.Text)
		}
	case runnerd.EventStepFinished:
		p.flushLine(e.Step)
		p.finished(at, e)
	case runnerd.EventPaused:
		p.println(fmt.Sprintf("%s %s %-20s %q", at, p.paint(yellow, "wait  "), e.Step, e.Prompt))
	}
}

func (p *Progress) finished(at string, e runnerd.Event) {
	label, colour := StepLabel(runnerd.StepStatus(e.Status))
	line := fmt.Sprintf("%s %s %-20s %8s  %s", at, p.paint(colour, label), e.Step,
		(time.Duration(e.DurationMS) * time.Millisecond).String(), e.Reason)
	switch {
	case e.Status != string(runnerd.StepFailed):
	case e.Signal != "":
		line += " (" + e.Signal + ")"
	case e.Exited() && e.ExitCode != 0:
		line += fmt.Sprintf(" (exit %d)", e.ExitCode)
	}
	if e.Message != "" {
		line += ": " + e.Message
	}
	p.println(line)
	if e.Status == string(runnerd.StepFailed) && !p.opt.Logs {
		var lines []string
		if p.opt.Tail != nil {
			lines = p.opt.Tail(e.Step)
		} else if t := p.tails[e.Step]; t != nil {
			lines = t.Lines()
		}
		for _, l := range lines {
			p.println("           | " + l)
		}
	}
	delete(p.tails, e.Step)
	for i, s := range p.running {
		if s == e.Step {
			p.running = append(p.running[:i], p.running[i+1:]...)
			break
		}
	}
}

// StepLabel is the fixed-width label of a finished step's status and its
// colour.
func StepLabel(s runnerd.StepStatus) (label, colour string) {
	switch s {
	case runnerd.StepSucceeded:
		return "ok    ", green
	case runnerd.StepFailed:
		return "FAIL  ", red
	case runnerd.StepSkipped:
		return "skip  ", yellow
	case runnerd.StepCancelled:
		return "cancel", yellow
	}
	return fmt.Sprintf("%-6s", s), ""
}

// output prints a step's output as whole lines prefixed by the step, so
// the lines of parallel steps never mix.
func (p *Progress) output(step, text string) { p.lines.Write(step, text, p.outputLine) }

func (p *Progress) outputLine(step, l string) {
	p.println(p.paint(p.colours[step], Prefix(step, PrefixWidth(p.opt.Steps))) + " " + l)
}

// flushLine ends a step's unfinished last output line.
func (p *Progress) flushLine(step string) { p.lines.Flush(step, p.outputLine) }

// println prints one line above the status line.
func (p *Progress) println(line string) {
	p.clearStatus()
	fmt.Fprintln(p.w, line)
	p.drawStatus()
}

func (p *Progress) clearStatus() {
	if p.status {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.status = false
	}
}

// drawStatus writes the status line: elapsed time and what runs or waits.
func (p *Progress) drawStatus() {
	if !p.opt.Terminal {
		return
	}
	select {
	case <-p.stop:
		return
	default:
	}
	what := "waiting"
	switch {
	case len(p.running) > 0:
		what = "running " + strings.Join(p.running, ", ")
	case p.note != "":
		what = p.note
	}
	line := fmt.Sprintf("%s %s", p.paint(bold, (time.Since(p.start)/(100*time.Millisecond)*(100*time.Millisecond)).String()), what)
	fmt.Fprint(p.w, "\r\x1b[K"+line)
	p.status = true
}
