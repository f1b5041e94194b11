package cli

import "strings"

// StepLines cuts the output of concurrent steps into whole lines, so that
// the lines of parallel steps never mix: a chunk's unfinished last line
// waits for the step's next chunk, or for Flush.
type StepLines struct {
	partial map[string]string // per step: its line not finished yet
	order   []string          // steps that had an unfinished line, first seen first
}

// Write adds a chunk of step's output and calls line with each line it
// completes, without its newline.
func (s *StepLines) Write(step, text string, line func(step, l string)) {
	buf := s.partial[step] + text
	for {
		i := strings.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		line(step, buf[:i])
		buf = buf[i+1:]
	}
	if buf == "" {
		delete(s.partial, step)
		return
	}
	if s.partial == nil {
		s.partial = map[string]string{}
	}
	if _, had := s.partial[step]; !had {
		s.order = append(s.order, step)
	}
	s.partial[step] = buf
}

// Flush ends step's unfinished line, if it has one.
func (s *StepLines) Flush(step string, line func(step, l string)) {
	if buf, ok := s.partial[step]; ok {
		delete(s.partial, step)
		line(step, buf)
	}
}

// FlushAll ends every unfinished line, in the order the steps first had one.
func (s *StepLines) FlushAll(line func(step, l string)) {
	for _, step := range s.order {
		s.Flush(step, line)
	}
	s.order = nil
}
