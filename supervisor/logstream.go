package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/runnerd/runnerd/blob"
)

// A step whose output passes what is stored as events (Config.EventLogMax)
// is a big one: its log is uploaded to S3 while the step runs, from the file
// runexec writes, so that at the step's end only the tail is left to send.
// Small logs are uploaded at the step's end in one PUT, as before: a stream
// holds a part buffer for the step's whole life.

// logTailPoll is how often a stream looks for more of a log it has read to
// its current end.
const logTailPoll = 20 * time.Millisecond

// logStream is the upload of one step's log while the step runs.
type logStream struct {
	key    string
	done   chan struct{} // closed at the step's end: read to EOF, then finish
	result chan streamResult
	cancel context.CancelFunc
}

type streamResult struct {
	n   int64
	err error
}

// startLogStream starts uploading the log of step, if it is not streaming
// already and the file can be opened as putStepFiles would (files.go).
// Errors are not fatal: the log is then uploaded at the step's end.
func (a *attempt) startLogStream(step string) {
	if a.streams[step] != nil || a.uploaded[step] || a.dir.root == "" {
		return
	}
	f, err := openInside(a.dir.logs(), step+".log")
	if err != nil {
		a.log.Debug().Err(err).Str("step", step).Msg("log stream: not started; the log is uploaded at the step's end")
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(a.ctx))
	ls := &logStream{
		key:    blob.StepLogKey(a.runID, a.attemptNo, step),
		done:   make(chan struct{}),
		result: make(chan streamResult, 1),
		cancel: cancel,
	}
	if a.streams == nil {
		a.streams = map[string]*logStream{}
	}
	a.streams[step] = ls
	a.log.Debug().Str("step", step).Msg("log stream: uploading the step's log while it runs")
	go func() {
		defer f.Close()
		n, err := a.sup.blobs.PutStreaming(ctx, ls.key, &tailReader{f: f, done: ls.done, ctx: ctx})
		ls.result <- streamResult{n, err}
	}()
}

// finishLogStream ends the stream of step, if there is one, and waits for
// it: ok when the whole log is in S3 under key. A failed stream is
// forgotten, so the caller uploads the log from the start.
func (a *attempt) finishLogStream(step string) (key string, n int64, ok bool) {
	ls := a.streams[step]
	if ls == nil {
		return "", 0, false
	}
	delete(a.streams, step)
	close(ls.done)
	r := <-ls.result
	ls.cancel()
	a.sup.m.s3Error(opPutLog, r.err)
	if r.err != nil {
		a.log.Warn().Err(r.err).Str("step", step).Msg("log stream failed: uploading the log again")
		return "", 0, false
	}
	return ls.key, r.n, true
}

// abortLogStreams cancels the streams still running (the attempt ends
// without uploading: lease lost, S3 away).
func (a *attempt) abortLogStreams() {
	for step, ls := range a.streams {
		ls.cancel()
		close(ls.done)
		<-ls.result
		delete(a.streams, step)
	}
}

// tailReader reads a file that is still being written: at its end it waits
// for more until done is closed, then reads what is left and ends.
type tailReader struct {
	f     *os.File
	done  <-chan struct{}
	ctx   context.Context
	final bool // done was seen: the next end of file is the end
}

func (t *tailReader) Read(p []byte) (int, error) {
	for {
		n, err := t.f.Read(p)
		if n > 0 || err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		if t.final {
			return 0, io.EOF
		}
		select {
		case <-t.done:
			t.final = true // one more read: what was written before the end
		case <-t.ctx.Done():
			return 0, t.ctx.Err()
		case <-time.After(logTailPoll):
		}
	}
}
