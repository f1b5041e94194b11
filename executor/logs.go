package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/runnerd/runnerd"
)

// Log events are coalesced: a chunk is flushed when it reaches flushSize or
// has waited flushEvery, so a chatty step makes a few large events rather
// than one per write.
const (
	flushSize  = 32 << 10
	flushEvery = 100 * time.Millisecond
)

var streamNames = [2]string{"stdout", "stderr"}

// stepLog is the log of one step: a file in the log dir shared by all its
// attempts, capped at limit bytes, and the log events of the current
// attempt.
type stepLog struct {
	mu        sync.Mutex
	f         *os.File
	size      int64 // bytes in the file, markers included
	limit     int64
	truncated bool
	attempt   int
	pending   [2][]byte
	emit      func(runnerd.Event)
	// eventLimit bounds the output sent as events (0: none); once reached,
	// eventsDone is set and the output goes to the file only.
	eventLimit int64
	eventBytes int64
	eventsDone bool
	stopFlush  chan struct{}
	flushDone  chan struct{}
	// secrets are masked in both streams before anything is written.
	secrets []string
}

func logPath(logDir, step string) string { return filepath.Join(logDir, step+".log") }

// openStepLog opens the step's log for appending. The cap counts what an
// earlier run of the step already wrote, so a resumed run cannot grow the
// file past it either.
func openStepLog(logDir, step string, limit int64, emit func(runnerd.Event)) (*stepLog, error) {
	f, err := os.OpenFile(logPath(logDir, step), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open step log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open step log: %w", err)
	}
	return &stepLog{f: f, size: fi.Size(), limit: limit, truncated: fi.Size() >= limit, emit: emit}, nil
}

func (l *stepLog) close() { l.f.Close() }

// beginAttempt writes the attempt's marker line and starts the timed flush.
func (l *stepLog) beginAttempt(n int) {
	l.mu.Lock()
	l.attempt = n
	l.mu.Unlock()
	l.marker(fmt.Sprintf("[runexec: attempt %d started %s]", n, time.Now().UTC().Format(time.RFC3339Nano)))
	l.stopFlush, l.flushDone = make(chan struct{}), make(chan struct{})
	go l.flushLoop(l.stopFlush, l.flushDone)
}

// endAttempt stops the timed flush and sends what is left.
func (l *stepLog) endAttempt() {
	close(l.stopFlush)
	<-l.flushDone
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked(0, true)
	l.flushLocked(1, true)
}

// marker writes an executor line into the file only. Markers are not
// counted against the cap's truncation decision but are counted in size.
func (l *stepLog) marker(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, _ := l.f.WriteString(line + "\n")
	l.size += int64(n)
}

// pump reads both pipes until EOF (or until they are closed) and returns a
// channel closed when both readers are done.
func (l *stepLog) pump(stdout, stderr *os.File) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, f := range []*os.File{stdout, stderr} {
		wg.Go(func() {
			m := newMasker(l.secrets)
			buf := make([]byte, 32<<10)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					if p := m.push(buf[:n]); len(p) > 0 {
						l.write(i, p)
					}
				}
				if err != nil {
					if p := m.flush(); len(p) > 0 {
						l.write(i, p)
					}
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

// write appends output of one stream. Past the cap the output is still
// read (so the step never blocks on a full pipe) but discarded, after one
// marker line that says so.
func (l *stepLog) write(stream int, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.truncated {
		return
	}
	if room := l.limit - l.size; int64(len(p)) > room {
		p = p[:max(room, 0)]
		l.truncated = true
	}
	n, _ := l.f.Write(p)
	l.size += int64(n)
	if !l.eventsDone {
		l.pending[stream] = append(l.pending[stream], p...)
	}
	if l.truncated {
		m := fmt.Sprintf("\n[runexec: log truncated at %d bytes; the rest of the output is discarded]\n", l.limit)
		n, _ := l.f.WriteString(m)
		l.size += int64(n)
		if !l.eventsDone {
			l.pending[stream] = append(l.pending[stream], m...)
		}
		l.flushLocked(stream, true)
		return
	}
	if len(l.pending[stream]) >= flushSize {
		l.flushLocked(stream, false)
	}
}

func (l *stepLog) flushLoop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			l.mu.Lock()
			l.flushLocked(0, false)
			l.flushLocked(1, false)
			l.mu.Unlock()
		}
	}
}

// flushLocked sends the pending chunk of a stream as one log event. Unless
// final, a trailing incomplete UTF-8 sequence is kept for the next chunk so
// a character split across reads is not mangled.
func (l *stepLog) flushLocked(stream int, final bool) {
	buf := l.pending[stream]
	cut := len(buf)
	if !final {
		cut -= incompleteTail(buf)
	}
	if cut <= 0 {
		return
	}
	l.emit(runnerd.Event{Type: runnerd.EventLog, Attempt: l.attempt, Stream: streamNames[stream], Text: string(buf[:cut])})
	rest := copy(buf, buf[cut:])
	l.pending[stream] = buf[:rest]
	l.eventBytes += int64(cut)
	if l.eventLimit > 0 && l.eventBytes >= l.eventLimit && !l.eventsDone {
		l.eventsDone = true
		l.pending = [2][]byte{}
		l.emit(runnerd.Event{Type: runnerd.EventLog, Attempt: l.attempt, Stream: streamNames[stream],
			Text: fmt.Sprintf("\n[runexec: further output of this step is in its log file only (%d bytes sent as events)]\n", l.eventBytes)})
	}
}

// incompleteTail returns the length of an unfinished UTF-8 sequence at the
// end of b (0 if none).
func incompleteTail(b []byte) int {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < 0x80 {
			return 0 // ASCII: nothing pending
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return i
			}
			return 0
		}
	}
	return 0
}
