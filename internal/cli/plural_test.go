package cli

import "testing"

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		n         int
		one, many string
		want      string
	}{
		{0, "run", "", "0 runs"}, {1, "run", "", "1 run"}, {2, "step", "", "2 steps"}, {1, "byte", "", "1 byte"},
		{3, "run", "runs", "3 runs"},
	} {
		if got := Count(tc.n, tc.one, tc.many); got != tc.want {
			t.Errorf("Count(%d, %q, %q) = %q, want %q", tc.n, tc.one, tc.many, got, tc.want)
		}
	}
}
