//go:build nodev

package main

import (
	"context"
	"fmt"
)

// runDev in a build without the embedded servers (`-tags nodev`, the
// production image): `runnerd serve` and the client commands are all there,
// `runnerd dev` is not.
func runDev(_ context.Context, env *cmdEnv, _ []string) int {
	fmt.Fprintln(env.stderr, "runnerd dev: this runnerd was built without the embedded servers (-tags nodev, the production build); use a build with them (make build) for runnerd dev")
	return exitUsage
}
