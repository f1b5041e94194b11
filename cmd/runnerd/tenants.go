package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/runnerd/runnerd/queue"
)

// parseTenantLimits reads per-tenant limits: tenant=N items (--tenant-limit,
// repeatable) and a file of such lines (--tenant-limits-file; blank lines and
// # comments are skipped). A tenant given twice keeps its last value; the
// flags win over the file.
func parseTenantLimits(items []string, file string) (map[string]int, error) {
	out := map[string]int{}
	add := func(where, item string) error {
		t, n, ok := strings.Cut(strings.TrimSpace(item), "=")
		t, n = strings.TrimSpace(t), strings.TrimSpace(n)
		v, err := strconv.Atoi(n)
		switch {
		case !ok:
			return fmt.Errorf("%s %q: want tenant=N", where, item)
		case queue.ValidateRunID(t) != nil:
			return fmt.Errorf("%s %q: tenant %q is not a tenant id (1-128 letters, digits, '_' and '-')", where, item, t)
		case err != nil || v < 0:
			return fmt.Errorf("%s %q: want a number of runs, 0 (no limit) or more", where, item)
		}
		out[t] = v
		return nil
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--tenant-limits-file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for line := 1; sc.Scan(); line++ {
			text := strings.TrimSpace(sc.Text())
			if text == "" || strings.HasPrefix(text, "#") {
				continue
			}
			if err := add(fmt.Sprintf("%s:%d:", file, line), text); err != nil {
				return nil, err
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--tenant-limits-file %s: %w", file, err)
		}
	}
	for _, it := range items {
		if err := add("--tenant-limit", it); err != nil {
			return nil, err
		}
	}
	return out, nil
}
