package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
)

// What a step may have left in its workdir in place of a file it declared:
// only a regular file of one link, inside the directory, is opened; the
// check holds for the open file, not for the path.
func TestOpenInsideRefusesWhatCouldRedirect(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(outside, "secret"), "secret")
	write(filepath.Join(dir, "ok.txt"), "ok")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Link(filepath.Join(outside, "secret"), filepath.Join(dir, "hard.txt")))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "out.txt")))
	must(os.Symlink("ok.txt", filepath.Join(dir, "in.txt")))
	must(os.Symlink(outside, filepath.Join(dir, "outdir")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o755))

	for rel, want := range map[string]string{
		"hard.txt":      "has 2 hard links",
		"out.txt":       "path escapes",
		"in.txt":        "is a symbolic link",
		"outdir/secret": "refused",
		"../" + filepath.Base(outside) + "/secret": "refused",
		"fifo": "not a regular file",
		"sub":  "not a regular file",
	} {
		f, err := openInside(dir, rel)
		if err == nil {
			f.Close()
			t.Errorf("%s: opened", rel)
			continue
		}
		if !errors.Is(err, errFileRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q (refused)", rel, err, want)
		}
	}
	if _, err := openInside(dir, "missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// Once open, a swap of the path changes nothing.
	f, err := openInside(dir, "ok.txt")
	must(err)
	defer f.Close()
	must(os.Remove(filepath.Join(dir, "ok.txt")))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "ok.txt")))
	b := make([]byte, 16)
	n, _ := f.Read(b)
	if string(b[:n]) != "ok" {
		t.Fatalf("read %q after the swap", b[:n])
	}
}

// A hard link to a file outside the workdir declared as an artifact is not
// uploaded; the refusal is in the step's log (in S3) and the step fails.
func TestRefusedArtifactIsNotUploadedAndFailsTheStep(t *testing.T) {
	e := newEnv(t, nil)
	sup, err := New(e.config("files"), e.q, e.st, e.blobs)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "shadow"), []byte("root:secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &attempt{sup: sup, ctx: context.Background(), runID: "files1", attemptNo: 1, started: time.Now().Add(-time.Minute),
		log: zerolog.Nop(), dir: runDir{root: t.TempDir()}}
	for _, d := range []string{a.dir.work(), a.dir.logs()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(outside, "shadow"), filepath.Join(a.dir.work(), "shadow.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.dir.logs(), "leak.log"), []byte("step output\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.state = runnerd.StepStates{"leak": {Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted,
		Artifacts: []string{"shadow.txt"}, StartedAt: time.Now(), TryStartedAt: time.Now()}}

	err = a.uploadStep("leak")
	if !errors.Is(err, errFileRefused) {
		t.Fatalf("upload: %v, want a refusal", err)
	}
	if _, herr := e.blobs.Head(context.Background(), blob.ArtifactKey("files1", "leak", "shadow.txt")); herr == nil {
		t.Fatal("the hard-linked file was uploaded")
	}
	if log := readBlob(t, e.blobs, blob.StepLogKey("files1", 1, "leak")); !strings.Contains(log, "shadow.txt has 2 hard links") {
		t.Fatalf("the step's log in S3 does not say why: %q", log)
	}
	ev := runnerd.Event{Type: runnerd.EventStepFinished, Step: "leak", Status: string(runnerd.StepSucceeded)}
	a.refuseStep(&ev, err)
	if st := a.state["leak"]; st.Status != runnerd.StepFailed || st.Reason != runnerd.StepReasonArtifact ||
		ev.Status != string(runnerd.StepFailed) || !strings.Contains(ev.Message, "hard links") || a.stopCause() != stopFileRefused {
		t.Fatalf("state %+v, event %+v, stop %v", st, ev, a.stopCause())
	}
	// The logs of a step whose log was replaced by a symlink are refused too.
	if err := os.Remove(filepath.Join(a.dir.logs(), "leak.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(a.dir.logs(), "leak.log")); err != nil {
		t.Fatal(err)
	}
	a.uploaded = nil
	a.state["leak"].Artifacts = nil
	if err := a.uploadStep("leak"); !errors.Is(err, errFileRefused) {
		t.Fatalf("a symlinked log: %v, want a refusal", err)
	}
}
