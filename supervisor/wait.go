package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/runnerd/runnerd/store"
)

// Waiting on infrastructure. Once a run is claimed, an unreachable MongoDB
// or S3 does not end the attempt: its runner holds the lease and retries in
// place, with backoff, until the server is back, the lease is lost or the
// shutdown grace is over. Nothing of this spends one of the run's attempts.
const (
	waitFirstDelay = 250 * time.Millisecond
	waitMaxDelay   = 5 * time.Second
	// A wait that lasts this long is written to the run document (for
	// `runnerd status`), where the store is reachable.
	waitNoteAfter = 2 * time.Second
	// How often a continuing wait is logged again.
	waitLogEvery = 30 * time.Second
	// How long a first try goes on once the hard stop has come: enough
	// for an outcome write, short of an upload's full try.
	hardStopTry = 10 * time.Second
)

// waitOn calls f, each time with a fresh timeout of tryTimeout, until it
// succeeds or final says its error is final. Between tries it waits with
// backoff; it gives up when the attempt's context ends (lease lost, shutdown
// grace over) and returns f's last error. The first try is always made,
// even if the attempt's context has ended, so that an outcome can still be
// written at a hard stop; from the hard stop on it gets at most hardStopTry.
//
// on names the server for the metrics and the run's wait note; what says
// what is being done, for the log.
func (a *attempt) waitOn(on, what string, tryTimeout time.Duration, f func(context.Context) error, final func(error) bool) error {
	try := func(parent context.Context) error {
		ctx, cancel := context.WithTimeout(parent, tryTimeout)
		defer cancel()
		return f(ctx)
	}
	first, endFirst := a.firstTryContext()
	err := try(first)
	endFirst()
	if err == nil || final(err) || a.ctx.Err() != nil {
		return err
	}

	s := a.sup
	s.m.waits.WithLabelValues(on).Inc()
	s.m.waiting.WithLabelValues(on).Inc()
	defer s.m.waiting.WithLabelValues(on).Dec()
	since := time.Now()
	noted := false
	lastLog := time.Time{}
	lastErr := err
	notify := func(err error, next time.Duration) {
		if time.Since(lastLog) >= waitLogEvery {
			lastLog = time.Now()
			a.log.Warn().Err(err).Str("on", on).Str("what", what).Dur("waiting_ms", time.Since(since).Round(time.Millisecond)).
				Msg("waiting for a server: retrying")
		}
		if !noted && on != onMongoDB && time.Since(since) >= waitNoteAfter {
			noted = a.noteWait(&store.Wait{On: on, Since: since.UTC(), Error: err.Error()}) == nil
		}
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = waitFirstDelay, waitMaxDelay
	_, err = backoff.Retry(a.ctx, func() (struct{}, error) {
		err := try(a.ctx)
		if err != nil {
			lastErr = err
			if final(err) {
				return struct{}{}, backoff.Permanent(err)
			}
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0), backoff.WithNotify(notify))
	if err == nil {
		a.log.Info().Str("on", on).Str("what", what).Dur("waited_ms", time.Since(since).Round(time.Millisecond)).Msg("server back: going on")
		if noted {
			_ = a.noteWait(nil)
		}
		return nil
	}
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return perm.Err
	}
	return lastErr
}

// firstTryContext is the context of waitOn's first try: the attempt's
// values without its end, cut hardStopTry after the supervisor's hard stop
// (a shutdown that waits for an upload's whole try would outlast its grace
// by minutes). end releases it, and awaits the cut if it has begun.
func (a *attempt) firstTryContext() (ctx context.Context, end func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(a.ctx))
	cut := make(chan struct{})
	stop := context.AfterFunc(a.sup.hardCtx, func() {
		defer close(cut)
		t := time.NewTimer(hardStopTry)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	})
	return ctx, func() {
		cancel()
		if !stop() {
			<-cut
		}
	}
}

// noteWait writes (or clears, w nil) the run's wait note, best effort.
func (a *attempt) noteWait(w *store.Wait) error {
	if a.epoch == 0 {
		return errors.New("not claimed")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 5*time.Second)
	defer cancel()
	err := a.sup.store.SetWaiting(ctx, a.runID, a.epoch, w)
	if err != nil {
		a.log.Debug().Err(err).Msg("wait note")
	}
	return err
}
