package main

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"

	"github.com/runnerd/runnerd/queue"
)

// tenantConcurrency is the value of --tenant-concurrency (repeatable; its
// variable holds a comma-separated list). Each entry is one of
//
//	N          the limit of every tenant without its own (0: no limit)
//	tenant=N   one tenant's own limit
//	@FILE      a file of tenant=N lines (blank lines and # comments skipped);
//	           a path with a '/' in it (./limits, /etc/runnerd/tenants)
//	           needs no '@', since no tenant id or number holds one
//
// Later entries win: a tenant given twice keeps its last value. A refused
// Set leaves the value as it was.
type tenantConcurrency struct {
	def *int           // the default, supervisor.Config.TenantConcurrency
	per map[string]int // tenant → limit
	raw []string       // every entry given, for String
}

func newTenantConcurrency(def *int) *tenantConcurrency {
	*def = 0
	return &tenantConcurrency{def: def, per: map[string]int{}}
}

func (v *tenantConcurrency) Type() string { return "N|tenant=N|@file" }

func (v *tenantConcurrency) String() string {
	if len(v.raw) == 0 {
		return strconv.Itoa(*v.def)
	}
	return strings.Join(v.raw, ",")
}

func (v *tenantConcurrency) Set(s string) error {
	def, haveDef := 0, false
	per := map[string]int{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		switch {
		case entry == "":
			return fmt.Errorf("empty entry in %q: want N, tenant=N or @FILE", s)
		case strings.HasPrefix(entry, "@") || (strings.Contains(entry, "/") && !strings.Contains(entry, "=")):
			if err := readTenantLimits(strings.TrimPrefix(entry, "@"), per); err != nil {
				return fmt.Errorf("entry %q: %w", entry, err)
			}
		case strings.Contains(entry, "="):
			if err := addTenantLimit(fmt.Sprintf("entry %q", entry), entry, per); err != nil {
				return err
			}
		default:
			n, err := strconv.Atoi(entry)
			if err != nil || n < 0 {
				return fmt.Errorf("entry %q: want N (every tenant's limit, 0: no limit), tenant=N or @FILE", entry)
			}
			def, haveDef = n, true
		}
	}
	if haveDef {
		*v.def = def
	}
	maps.Copy(v.per, per)
	v.raw = append(v.raw, s)
	return nil
}

// addTenantLimit reads one tenant=N item into out; where names the item in
// an error.
func addTenantLimit(where, item string, out map[string]int) error {
	t, n, ok := strings.Cut(strings.TrimSpace(item), "=")
	t, n = strings.TrimSpace(t), strings.TrimSpace(n)
	v, err := strconv.Atoi(n)
	switch {
	case !ok:
		return fmt.Errorf("%s: want tenant=N", where)
	case queue.ValidateRunID(t) != nil:
		return fmt.Errorf("%s: tenant %q is not a tenant id (1-128 letters, digits, '_' and '-')", where, t)
	case err != nil || v < 0:
		return fmt.Errorf("%s: want tenant=N with N a number of runs, 0 (no limit) or more", where)
	}
	out[t] = v
	return nil
}

// readTenantLimits reads a file of tenant=N lines into out; an error names
// the file and the line.
func readTenantLimits(file string, out map[string]int) error {
	if file == "" {
		return fmt.Errorf("want @FILE with a file name")
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if err := addTenantLimit(fmt.Sprintf("%s:%d: %q", file, line, text), text, out); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

// tenantLimits merges the per-tenant limits: --tenant-limits-file, then
// --tenant-concurrency's tenant=N entries and files, then --tenant-limit
// items (the older spellings, kept as aliases); a later one wins.
func tenantLimits(tc *tenantConcurrency, items []string, file string) (map[string]int, error) {
	out := map[string]int{}
	if file != "" {
		if err := readTenantLimits(file, out); err != nil {
			return nil, fmt.Errorf("--tenant-limits-file: %w", err)
		}
	}
	maps.Copy(out, tc.per)
	for _, it := range items {
		if err := addTenantLimit(fmt.Sprintf("--tenant-limit %q", it), it, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}
