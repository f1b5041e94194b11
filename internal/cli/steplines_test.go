package cli

import (
	"fmt"
	"testing"
)

func TestStepLinesKeepsStepsApart(t *testing.T) {
	var got []string
	line := func(step, l string) { got = append(got, step+"|"+l) }
	var s StepLines
	s.Write("a", "a1\na", line)
	s.Write("b", "b", line)
	s.Write("a", "2\n", line)
	s.Write("c", "c1", line)
	s.Write("b", "1", line)
	s.Flush("c", line)
	s.FlushAll(line)
	s.FlushAll(line)
	if want := "[a|a1 a|a2 c|c1 b|b1]"; fmt.Sprint(got) != want {
		t.Fatalf("lines %v, want %s", got, want)
	}
}
