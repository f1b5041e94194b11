package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// Root prepares a binary's root command: help and --version on stdout,
// errors on stderr, flag errors as usage errors, every flag's RUNNERD_*
// variable applied before a command runs. A root given no command prints
// its help on stdout and exits 0 (as kubectl does); an unknown command is a
// usage error (exit 2).
func Root(root *cobra.Command, version string) *cobra.Command {
	root.Version = version
	root.SetVersionTemplate(root.Name() + " {{.Version}}\n")
	root.SilenceErrors, root.SilenceUsage = true, true
	root.CompletionOptions.DisableDefaultCmd = true
	cobra.EnableCommandSorting = false // in the order the binary adds them
	cobra.AddTemplateFunc("runnerdFlagUsages", FlagUsages)
	cobra.AddTemplateFunc("runnerdFlagsHeading", FlagsHeading)
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		return ApplyEnv(c.Flags(), nil)
	}
	root.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return Usagef("unknown command %q", args[0])
		}
		_, err := fmt.Fprint(c.OutOrStdout(), c.UsageString())
		return err
	}
	root.Args = cobra.ArbitraryArgs
	return root
}

// Execute runs root with args and returns the exit code; an error is
// printed on stderr as "<command>: <error>", a usage error with a pointer
// to --help.
func Execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	var plain func(*cobra.Command)
	plain = func(c *cobra.Command) { // use lines say which flags matter
		c.DisableFlagsInUseLine = true
		for _, sub := range c.Commands() {
			plain(sub)
		}
	}
	plain(root)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	c, err := root.ExecuteC()
	if err == nil {
		return ExitOK
	}
	if strings.HasPrefix(err.Error(), "unknown command ") { // from cobra's own argument checks
		err = Usage(err)
	}
	if !Silent(err) {
		name := root.Name()
		if c != nil {
			name = c.CommandPath()
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", name, line)
		}
		var u *UsageError
		if errors.As(err, &u) {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", name)
		}
	}
	return Code(err)
}

// FlagsOf wraps a command's flag set.
func FlagsOf(c *cobra.Command) Flags { return Flags{FS: c.Flags()} }

// ExactArgs accepts exactly n positional arguments, naming what it is.
func ExactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			count := fmt.Sprint(n)
			if n == 1 {
				count = "one"
			}
			return Usagef("want exactly %s %s, got %d arguments", count, what, len(args))
		}
		return nil
	}
}

// NoArgs refuses positional arguments.
func NoArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef("unexpected argument %q", args[0])
	}
	return nil
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Redraws reports whether a status line may be redrawn in place on w
// ("\r\x1b[K"): a terminal other than TERM=dumb, which gets plain lines.
func Redraws(w io.Writer) bool { return IsTerminal(w) && os.Getenv("TERM") != "dumb" }

// Colour reports whether to colour what goes to w: a terminal, NO_COLOR
// unset or empty (no-color.org), TERM not dumb.
func Colour(w io.Writer) bool {
	return IsTerminal(w) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// usageTemplate is the help of every command: its use line, subcommands,
// flags with their defaults and variables.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} <command> [flags]

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

{{runnerdFlagsHeading .LocalFlags}}
{{runnerdFlagUsages .LocalFlags}}{{end}}{{if .HasAvailableSubCommands}}

"{{.CommandPath}} <command> --help" lists a command's flags.{{end}}
`

// FlagsHeading heads the flag list: it explains the variables in brackets
// only where some flag has one.
func FlagsHeading(fs *pflag.FlagSet) string {
	vars := false
	fs.VisitAll(func(fl *pflag.Flag) { vars = vars || (!fl.Hidden && len(fl.Annotations[envAnnotation]) > 0) })
	if vars {
		return "Flags (a variable in brackets is read when its flag is not given):"
	}
	return "Flags:"
}

// FlagUsages lists flags one per line: name, value type, what it does,
// default and variable.
func FlagUsages(fs *pflag.FlagSet) string {
	type row struct{ left, right string }
	var rows []row
	width := 0
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden {
			return
		}
		kind, usage := pflag.UnquoteUsage(fl)
		left := "      --" + fl.Name
		if fl.Shorthand != "" {
			left = "  -" + fl.Shorthand + ", --" + fl.Name
		}
		if kind != "" && kind != "bool" {
			left += " " + kind
		}
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" && fl.DefValue != "0s" && fl.DefValue != "[]" {
			usage += " (default " + fl.DefValue + ")"
		}
		if env := fl.Annotations[envAnnotation]; len(env) > 0 {
			usage += " [$" + env[0] + "]"
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s   %s\n", width, r.left, r.right)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// VersionCmd is the `version` subcommand of program (runnerd, runexec): its
// name and version on stdout, or {"version": …} with --json.
func VersionCmd(program, version string, stdout io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version [--json]",
		Short: "print the version",
		Args:  NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if asJSON {
				return json.NewEncoder(stdout).Encode(map[string]string{"version": version})
			}
			_, err := fmt.Fprintf(stdout, "%s %s\n", program, version)
			return err
		},
	}
	FlagsOf(c).Bool(&asJSON, "json", false, `print {"version": …}`).NoEnv()
	return c
}
