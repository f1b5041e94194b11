package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
)

func artifactsCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg    clientConfig
		step   string
		dir    string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "artifacts ID [--step S] [-o DIR] [--json]",
		Short: "download a run's artifacts",
		Long: `Downloads the artifacts a run's steps declared and uploaded (S3 keys
runs/<id>/artifacts/<step>/<path>) into DIR/<step>/<path>, DIR being the
current directory unless -o says otherwise. Files already there are replaced.
--json prints what was written.`,
		Args: cli.ExactArgs(1, "run id"),
		RunE: func(c *cobra.Command, args []string) error {
			return artifacts(c.Context(), env, cfg, args[0], step, dir, asJSON)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.String(&step, "step", "", "only this step's artifacts").NoEnv()
	f.Var(cli.StringValue(&dir, "."), "output", "o", "directory to write them in").NoEnv()
	f.Bool(&asJSON, "json", false, `print {"run_id", "dir", "files": [{"step", "path", "key", "size", "file"}]}`).NoEnv()
	return c
}

// artifactFile is one downloaded artifact.
type artifactFile struct {
	Step string `json:"step"`
	Path string `json:"path"` // relative to the run's workdir
	Key  string `json:"key"`  // its S3 key
	Size int64  `json:"size"`
	File string `json:"file"` // where it was written
}

func artifacts(ctx context.Context, env *cmdEnv, cfg clientConfig, id, step, dir string, asJSON bool) error {
	c, _, r, err := openRun(ctx, cfg, needMongo, "runnerd artifacts", id)
	if err != nil {
		return err
	}
	defer c.Close()
	if steps := client.StepOrder(r); step != "" && !slices.Contains(steps, step) {
		return cli.Class(cli.ErrNotFound, fmt.Errorf("run %s has no step %q (steps: %s)", id, step, dash(strings.Join(steps, ", "))))
	}
	blobs, err := c.blob(ctx)
	if err != nil {
		return cfg.classify(err)
	}
	prefix := blob.ArtifactPrefix(id)
	if step != "" {
		prefix += step + "/"
	}
	objs, err := blobs.List(ctx, prefix)
	if err != nil {
		return cfg.classify(err)
	}
	root, err := openDir(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var files []artifactFile
	var total int64
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, blob.ArtifactPrefix(id))
		stepID, p, ok := strings.Cut(rel, "/")
		if !ok || !filepath.IsLocal(rel) {
			fmt.Fprintf(env.stderr, "runnerd artifacts: skipping %s: not a step's artifact path\n", o.Key)
			continue
		}
		n, err := download(ctx, blobs, o.Key, root, rel)
		if err != nil {
			return cfg.classify(err)
		}
		total += n
		files = append(files, artifactFile{Step: stepID, Path: p, Key: o.Key, Size: n, File: filepath.Join(dir, rel)})
	}
	if asJSON {
		if files == nil {
			files = []artifactFile{}
		}
		return writeJSON(env.stdout, map[string]any{"run_id": id, "dir": dir, "files": files})
	}
	if len(files) == 0 {
		fmt.Fprintf(env.stderr, "run %s has no artifacts%s (status %s)\n", id, map[bool]string{true: " from step " + step}[step != ""], r.Status)
		return nil
	}
	for _, f := range files {
		fmt.Fprintf(env.stderr, "%s (%d bytes)\n", f.File, f.Size)
	}
	fmt.Fprintf(env.stderr, "%s of run %s (%s) in %s\n", cli.Count(len(files), "artifact", ""), id, cli.Count(int(total), "byte", ""), dir)
	return nil
}

// download copies the object at key to rel inside root; rel cannot leave
// it (os.Root refuses "..", absolute paths and symlinks out).
func download(ctx context.Context, blobs *blob.Store, key string, root *os.Root, rel string) (int64, error) {
	rc, err := blobs.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", key, err)
	}
	defer rc.Close()
	if d := path.Dir(filepath.ToSlash(rel)); d != "." {
		if err := root.MkdirAll(filepath.FromSlash(d), 0o755); err != nil {
			return 0, fmt.Errorf("create %s: %w", d, err)
		}
	}
	f, err := root.Create(rel)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", rel, err)
	}
	n, err := io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("write %s from %s: %w", rel, key, err)
	}
	return n, nil
}

// openDir opens (creating it) the directory artifacts are written in.
func openDir(dir string) (*os.Root, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, cli.Usagef("-o %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, cli.Usagef("-o %s: %w", dir, err)
	}
	return root, nil
}
