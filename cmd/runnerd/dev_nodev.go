//go:build nodev

package main

import (
	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/internal/cli"
)

// devCmd in a build without the embedded servers (`-tags nodev`, the
// production image): `runnerd serve` and the client commands are all there,
// `runnerd dev` is not.
func devCmd(*cmdEnv) *cobra.Command {
	return &cobra.Command{
		Use:                "dev",
		Short:              "not in this build (-tags nodev): the embedded servers are left out",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return cli.Usagef("this runnerd was built without the embedded servers (-tags nodev, the production build); use a build with them (make build) for runnerd dev")
		},
	}
}
