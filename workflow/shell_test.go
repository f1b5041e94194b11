package workflow

import (
	"strings"
	"testing"
)

func TestRewriteShell(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`echo ${{ vars.a }}`, `echo "${RUNEXEC_TPL_1}"`},
		{`echo "x ${{ vars.a }} y"`, `echo "x ${RUNEXEC_TPL_1} y"`},
		{`echo "$(echo ${{ vars.a }})"`, `echo "$(echo "${RUNEXEC_TPL_1}")"`},
		{`(cd x && echo ${{ vars.a }}); echo ${{ vars.b }}`, `(cd x && echo "${RUNEXEC_TPL_1}"); echo "${RUNEXEC_TPL_2}"`},
		{"cat <<EOF\n${{ vars.a }} 'q\nEOF\necho ${{ vars.b }}", "cat <<EOF\n${RUNEXEC_TPL_1} 'q\nEOF\necho \"${RUNEXEC_TPL_2}\""},
		{"cat <<-END\n\t\"${{ vars.a }}\"\n\tEND", "cat <<-END\n\t\"${RUNEXEC_TPL_1}\"\n\tEND"},
		{`echo 'it''s' \'${{ vars.a }}`, `echo 'it''s' \'"${RUNEXEC_TPL_1}"`},
		{"# don't ${{ vars.a }}\necho ${{ vars.b }}", "# don't $ {{ vars.a }}\necho \"${RUNEXEC_TPL_1}\""},
	} {
		got, err := rewriteShell(tc.in, func(int, string) error { return nil })
		if err != nil || got != tc.want {
			t.Errorf("rewrite %q:\n got %q, %v\nwant %q", tc.in, got, err, tc.want)
		}
	}
}

func TestShellTemplatesRefusedWhereNotExpanded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`echo '${{ vars.a }}'`, "line 1: ${{ vars.a }} inside single quotes, where nothing is expanded: end the quotes before it and open them again after it ('…'${{ vars.a }}'…'), or use double quotes"},
		{"echo ok\necho `echo ${{ vars.a }}`", "line 2: ${{ vars.a }} inside backticks: write $( … ) instead of ` … `"},
		{"cat <<'EOF'\n${{ vars.a }}\nEOF", "line 2: ${{ vars.a }} in a here-document whose delimiter is quoted (<<'EOF'), where nothing is expanded: unquote the delimiter (<<EOF)"},
		{`echo "${{ vars.a }"`, "line 1: unterminated ${{ (want ${{ expr }})"},
	} {
		err := checkShell(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("check %q:\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

func TestValidateRefusesUnsafeShellTemplates(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("vars: {a: x}\nsteps:\n  - id: s\n    shell: echo '${{ vars.a }}'\n"), "q.yaml")
	if err == nil || !strings.Contains(err.Error(), "inside single quotes") || !strings.Contains(err.Error(), `step "s"`) {
		t.Fatalf("validate: %v", err)
	}
}
