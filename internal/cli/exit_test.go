package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/runnerd/runnerd"
)

// Code tells a run that failed (1) from a command that failed (70 when no
// class says why), and README.md's table lists exactly the codes Code
// returns.
func TestCodeTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{Outcome(runnerd.StatusSucceeded), ExitOK},
		{Outcome(runnerd.StatusFailed), ExitFailed},
		{Outcome(runnerd.StatusPaused), ExitPaused},
		{Outcome(runnerd.StatusCancelled), ExitCancelled},
		{Usagef("bad flag"), ExitUsage},
		{Class(ErrNotFound, errors.New("no run x")), ExitNotFound},
		{Class(ErrConflict, errors.New("exists")), ExitConflict},
		{fmt.Errorf("dial: %w", ErrUnavailable), ExitUnavailable},
		{fmt.Errorf("write stdout: %w", fs.ErrClosed), ExitSoftware},
		{errors.New("something else"), ExitSoftware},
		{Quiet(errors.New("logged")), ExitSoftware},
		{Class(ErrRefused, errors.New("auth")), ExitNoPerm},
		{fmt.Errorf("follow: %w", ErrInterrupted), ExitInterrupted},
	} {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []int
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \| `).FindAllStringSubmatch(string(readme), -1) {
		n, _ := strconv.Atoi(m[1])
		documented = append(documented, n)
	}
	want := []int{ExitOK, ExitFailed, ExitUsage, ExitPaused, ExitCancelled, ExitNotFound, ExitConflict,
		ExitUnavailable, ExitSoftware, ExitNoPerm, ExitInterrupted}
	if !slices.Equal(documented, want) {
		t.Errorf("README.md's exit code table lists %v, want %v", documented, want)
	}
}
