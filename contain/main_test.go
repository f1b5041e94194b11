package contain

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets tests re-execute this binary as a helper process, and makes
// the test process a subreaper, as runexec is.
func TestMain(m *testing.M) {
	if mode := os.Getenv(hardenHelperEnv); mode != "" {
		hardenHelper(mode) // re-executed by TestStepsCannotReadRunnerdEnviron
	}
	if err := BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
