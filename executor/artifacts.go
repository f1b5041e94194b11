package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// collectArtifacts resolves declared paths and globs inside workdir and
// returns the files they name, relative to workdir, sorted. A directory
// stands for the files under it. Every file is checked after resolving
// symlinks: one that lands outside workdir is refused, since whoever
// uploads artifacts would otherwise read any file the runner can; so is a
// file that is a symlink itself, not a regular file, or has more than one
// link. runnerd checks again when it opens the file for the upload.
func collectArtifacts(workdir string, patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	root, err := filepath.EvalSymlinks(workdir)
	if err != nil {
		return nil, fmt.Errorf("resolve workdir: %w", err)
	}
	c := &collector{workdir: workdir, root: root, seen: map[string]bool{}, walked: map[string]bool{}}
	for _, pattern := range patterns {
		if filepath.IsAbs(pattern) {
			return nil, fmt.Errorf("artifact %q: absolute paths are refused", pattern)
		}
		matches, err := filepath.Glob(filepath.Join(workdir, pattern))
		if err != nil {
			return nil, fmt.Errorf("artifact %q: %w", pattern, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("artifact %q: matched nothing", pattern)
		}
		for _, m := range matches {
			if err := c.add(pattern, m); err != nil {
				return nil, err
			}
		}
	}
	slices.Sort(c.out)
	return c.out, nil
}

type collector struct {
	workdir, root string
	seen          map[string]bool // artifacts already listed
	walked        map[string]bool // real directories already walked (symlink loops)
	out           []string
}

// add checks path and lists it, or every file under it when it resolves to
// a directory. The check comes first, so a symlink to a directory outside
// the workdir is refused before anything is walked.
func (c *collector) add(pattern, path string) error {
	rel, err := filepath.Rel(c.workdir, path)
	if err != nil || !filepath.IsLocal(rel) {
		return fmt.Errorf("artifact %q: %s is outside the workdir: refused", pattern, path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("artifact %q: %s: %w", pattern, rel, err)
	}
	if r, err := filepath.Rel(c.root, real); err != nil || !filepath.IsLocal(r) {
		return fmt.Errorf("artifact %q: %s resolves to %s, outside the workdir: refused", pattern, rel, real)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("artifact %q: %s: %w", pattern, rel, err)
	}
	if !fi.IsDir() {
		// What runnerd uploads: a regular file of one link, named by its
		// own path (a hard link to a file outside the workdir is inside it
		// by path; a symlink could be pointed elsewhere before the upload).
		if lfi, err := os.Lstat(path); err == nil && lfi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("artifact %q: %s is a symbolic link: refused (declare the file it points to)", pattern, rel)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("artifact %q: %s is not a regular file (%s): refused", pattern, rel, fi.Mode().Type())
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink != 1 {
			return fmt.Errorf("artifact %q: %s has %d hard links: refused", pattern, rel, st.Nlink)
		}
		if !c.seen[rel] {
			c.seen[rel] = true
			c.out = append(c.out, rel)
		}
		return nil
	}
	if c.walked[real] {
		return nil
	}
	c.walked[real] = true
	entries, err := os.ReadDir(real)
	if err != nil {
		return fmt.Errorf("artifact %q: %s: %w", pattern, rel, err)
	}
	// Children are named under the declared path, not the resolved one, so
	// listed paths look like what the workflow declared.
	for _, e := range entries {
		if err := c.add(pattern, filepath.Join(path, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
