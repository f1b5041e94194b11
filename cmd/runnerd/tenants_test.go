package main

import (
	"strings"
	"testing"
)

func TestParseTenantLimits(t *testing.T) {
	file := writeFile(t, "limits", "# per tenant\nacme=4\n\nbig = 2\n")
	got, err := parseTenantLimits([]string{"big=3", "small=0"}, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["acme"] != 4 || got["big"] != 3 || got["small"] != 0 {
		t.Errorf("limits %v, want acme=4, big=3 (the flag wins), small=0", got)
	}
	bad := writeFile(t, "bad", "acme=4\nno.dots=1\n")
	for _, tc := range []struct {
		items []string
		file  string
		want  string
	}{
		{[]string{"acme"}, "", `--tenant-limit "acme": want tenant=N`},
		{[]string{"acme=-1"}, "", "want a number of runs"},
		{[]string{"acme=x"}, "", "want a number of runs"},
		{nil, bad, bad + `:2: "no.dots=1": tenant "no.dots" is not a tenant id`},
		{nil, "/nonexistent/limits", "--tenant-limits-file"},
	} {
		if _, err := parseTenantLimits(tc.items, tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: %v, want %q", tc.items, tc.file, err, tc.want)
		}
	}
}
