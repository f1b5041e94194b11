package supervisor

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/runnerd/runnerd"
)

// errFileRefused marks a step's file (artifact or log) that runnerd will
// not upload: not a regular file of one link inside its directory. The step
// fails (reason artifact); it is never saved as succeeded without its files.
var errFileRefused = errors.New("refused")

// openInside opens dir/rel for reading such that nothing a step did can
// redirect the read: os.Root keeps every path component inside dir,
// the path must name the opened file itself (not a symlink to it),
// O_NONBLOCK keeps a FIFO from blocking the open, and the checks are made
// with fstat on the open file, so swapping the path afterwards changes
// nothing. A file with more than
// one link is refused: a hard link to a file outside the workdir (say
// /etc/shadow) is inside it by path. A missing file is fs.ErrNotExist.
func openInside(dir, rel string) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, syscall.ELOOP):
		return nil, fmt.Errorf("%s is a symbolic link: %w", rel, errFileRefused)
	case errors.Is(err, os.ErrNotExist):
		return nil, err
	case err != nil:
		// os.Root's refusal of a path that leaves dir, among others.
		return nil, fmt.Errorf("%s: %v: %w", rel, err, errFileRefused)
	}
	if err := checkRegular(f, rel); err != nil {
		f.Close()
		return nil, err
	}
	// os.Root follows a symlink that stays inside dir, O_NOFOLLOW or not:
	// the path itself must name the very file that was opened.
	if li, err := root.Lstat(rel); err != nil || !sameFile(li, f) {
		f.Close()
		if err == nil && li.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symbolic link: %w", rel, errFileRefused)
		}
		return nil, fmt.Errorf("%s changed while it was opened: %w", rel, errFileRefused)
	}
	return f, nil
}

func sameFile(li os.FileInfo, f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && os.SameFile(li, fi)
}

func checkRegular(f *os.File, rel string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s): %w", rel, fi.Mode().Type(), errFileRefused)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink != 1 {
		return fmt.Errorf("%s has %d hard links: %w", rel, st.Nlink, errFileRefused)
	}
	return nil
}

// openArtifacts opens every artifact of a step with openInside; on any
// error the ones opened are closed.
func openArtifacts(workdir string, rels []string) ([]*os.File, error) {
	files := make([]*os.File, 0, len(rels))
	for _, rel := range rels {
		f, err := openInside(workdir, rel)
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%s: gone before its upload: %w", rel, errFileRefused)
		}
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("artifact %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// noteInLog appends a marker line to a step's log before it is uploaded
// (opened as openInside does, the log dir being writable by steps).
func noteInLog(logDir, name, line string) {
	root, err := os.OpenRoot(logDir)
	if err != nil {
		return
	}
	defer root.Close()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	if checkRegular(f, name) == nil {
		_, _ = f.WriteString("\n" + line + "\n")
	}
}

// refuseStep turns a step that reported success but whose files were
// refused into a failed step (reason artifact), in its state and in the
// step_finished event about to be stored, and stops the child: the run
// fails step_failed, as for any failed step.
func (a *attempt) refuseStep(e *runnerd.Event, err error) {
	msg := err.Error()
	e.Status, e.Reason, e.Message = string(runnerd.StepFailed), string(runnerd.StepReasonArtifact), msg
	if st := a.state[e.Step]; st != nil {
		st.Status, st.Reason, st.Artifacts = runnerd.StepFailed, runnerd.StepReasonArtifact, nil
	}
	if a.uploaded == nil {
		a.uploaded = map[string]bool{}
	}
	a.uploaded[e.Step] = true // its log, with the refusal noted, is uploaded
	a.log.Warn().Err(err).Str("step", e.Step).Str("reason", string(runnerd.StepReasonArtifact)).
		Msg("a file of a succeeded step was refused: the step fails")
	a.stopFor(stopFileRefused)
}
