package cli

import (
	"errors"
	"fmt"

	"github.com/runnerd/runnerd"
)

// The exit codes of both binaries: 0-4 are a run's outcome (runexec run,
// runnerd submit/resume/retry --wait); the others say that the command
// itself could not do its job, and why. README.md has the table.
const (
	ExitOK          = 0   // succeeded
	ExitFailed      = 1   // the run failed
	ExitUsage       = 2   // bad flag, argument, setting or workflow
	ExitPaused      = 3   // a human step waits for answers
	ExitCancelled   = 4   // the run was cancelled
	ExitNotFound    = 5   // no such run (or step)
	ExitConflict    = 6   // the run exists already, or its status refuses the command
	ExitUnavailable = 69  // a server cannot be reached (EX_UNAVAILABLE)
	ExitSoftware    = 70  // the command failed for a reason of no class here: I/O, an internal error (EX_SOFTWARE)
	ExitNoPerm      = 77  // a server refused the credentials (EX_NOPERM)
	ExitInterrupted = 130 // SIGINT/SIGTERM stopped a follow (128 + SIGINT)
)

// The error classes behind the exit codes; wrap them with %w.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("server unavailable")
	ErrRefused     = errors.New("credentials refused")
	ErrInterrupted = errors.New("interrupted")
)

// UsageError is a bad invocation: exit 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as a usage error (nil stays nil).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{err}
}

// Usagef is a new usage error.
func Usagef(format string, args ...any) error { return &UsageError{fmt.Errorf(format, args...)} }

// outcome is a run that settled other than succeeded: not an error of the
// command (the run's end was already printed), but its exit code.
type outcome struct{ status runnerd.Status }

func (o outcome) Error() string { return "run " + string(o.status) }

// Outcome is the result of a command that followed a run to status s:
// nil for succeeded, else an error carrying s's exit code that Main does
// not print.
func Outcome(s runnerd.Status) error {
	if s == runnerd.StatusSucceeded {
		return nil
	}
	return outcome{s}
}

// StatusExit is the exit code of a settled run's status.
func StatusExit(s runnerd.Status) int {
	switch s {
	case runnerd.StatusSucceeded:
		return ExitOK
	case runnerd.StatusPaused:
		return ExitPaused
	case runnerd.StatusCancelled:
		return ExitCancelled
	default:
		return ExitFailed
	}
}

// Code is the exit code of a command that returned err: the one mapping
// of errors and run outcomes to exit codes of both binaries.
func Code(err error) int {
	var o outcome
	var u *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &o):
		return StatusExit(o.status)
	case errors.As(err, &u):
		return ExitUsage
	case errors.Is(err, ErrInterrupted):
		return ExitInterrupted
	case errors.Is(err, ErrRefused):
		return ExitNoPerm
	case errors.Is(err, ErrUnavailable):
		return ExitUnavailable
	case errors.Is(err, ErrNotFound):
		return ExitNotFound
	case errors.Is(err, ErrConflict):
		return ExitConflict
	}
	// Not 1: that says the run failed, and this run may have done fine.
	return ExitSoftware
}

// Silent reports whether err needs no message of its own (a run outcome,
// or an error already logged).
func Silent(err error) bool {
	var o outcome
	var q quiet
	return errors.As(err, &o) || errors.As(err, &q)
}

// Quiet marks err as already reported (in a log line): Main prints
// nothing more, and exits with err's code.
func Quiet(err error) error {
	if err == nil {
		return nil
	}
	return quiet{err}
}

type quiet struct{ err error }

func (q quiet) Error() string { return q.err.Error() }
func (q quiet) Unwrap() error { return q.err }

// Class wraps err so that it matches class too, keeping err's text.
func Class(class, err error) error {
	if err == nil {
		return nil
	}
	return classed{class, err}
}

type classed struct{ class, err error }

func (c classed) Error() string   { return c.err.Error() }
func (c classed) Unwrap() []error { return []error{c.err, c.class} }
