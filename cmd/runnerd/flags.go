package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// flags is a flag.FlagSet where every flag also reads a RUNNERD_* variable:
// a flag on the command line wins over its variable, which wins over the
// default. `--help` lists both.
type flags struct {
	fs      *flag.FlagSet
	out     io.Writer
	usage   string
	envs    map[string]string // flag name → variable
	lookup  func(string) (string, bool)
	listKey map[string]bool // repeatable flags: no variable
}

func newFlags(name, usage string, out io.Writer) *flags {
	f := &flags{
		fs:      flag.NewFlagSet(name, flag.ContinueOnError),
		out:     out,
		usage:   usage,
		envs:    map[string]string{},
		lookup:  os.LookupEnv,
		listKey: map[string]bool{},
	}
	// The caller reports a bad value in one line and prints the usage only
	// for --help (see help): the flag package would print both, every time.
	f.fs.SetOutput(io.Discard)
	f.fs.Usage = func() {}
	return f
}

// help prints the usage with every flag, its default and its variable.
func (f *flags) help() { f.printUsage(f.out) }

// envName is the variable of a flag: --lease-ttl → RUNNERD_LEASE_TTL.
func envName(flagName string) string {
	return "RUNNERD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f *flags) String(p *string, name, def, usage string) {
	f.fs.StringVar(p, name, def, usage)
	f.envs[name] = envName(name)
}

func (f *flags) Int(p *int, name string, def int, usage string) {
	*p = def
	f.fs.Var((*intValue)(p), name, usage)
	f.envs[name] = envName(name)
}

func (f *flags) Bool(p *bool, name string, def bool, usage string) {
	*p = def
	f.fs.Var((*boolValue)(p), name, usage)
	f.envs[name] = envName(name)
}

func (f *flags) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	f.fs.Var((*durationValue)(p), name, usage)
	f.envs[name] = envName(name)
}

// Bytes is a size such as 512MiB, 2GiB or 1000000.
func (f *flags) Bytes(p *int64, name string, def int64, usage string) {
	*p = def
	f.fs.Var((*byteSize)(p), name, usage)
	f.envs[name] = envName(name)
}

// List is a repeatable flag (--var k=v --var k2=v2); it has no variable.
func (f *flags) List(p *[]string, name, usage string) {
	f.fs.Var((*stringList)(p), name, usage)
	f.listKey[name] = true
}

// Paths is a repeatable flag of paths whose variable holds a
// colon-separated list (like PATH).
func (f *flags) Paths(p *[]string, name, usage string) {
	f.fs.Var((*pathList)(p), name, usage)
	f.envs[name] = envName(name)
}

// Parse parses args, then fills the flags not given from their variables.
// Every bad value is reported, each on a line naming the flag or variable.
func (f *flags) Parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(f.envs)) {
		env := f.envs[name]
		v, ok := f.lookup(env)
		if !ok || given[name] {
			continue
		}
		if err := f.fs.Set(name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, unwrapFlagErr(err)))
		}
	}
	return errors.Join(errs...)
}

func unwrapFlagErr(err error) error {
	if ne, ok := errors.Unwrap(err).(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}

// Given reports whether a flag was set, on the command line or through its
// variable, rather than left at its default.
func (f *flags) Given(name string) bool {
	given := false
	f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == name })
	return given
}

// Args are the positional arguments after the flags.
func (f *flags) Args() []string { return f.fs.Args() }

func (f *flags) printUsage(out io.Writer) {
	fmt.Fprintf(out, "%s\n\nFlags (one with a variable in brackets reads it when the flag is not given):\n", f.usage)
	f.fs.VisitAll(func(fl *flag.Flag) {
		name, usage := flag.UnquoteUsage(fl)
		if k, ok := fl.Value.(interface{ kind() string }); ok {
			name = k.kind()
		}
		line := "  --" + fl.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(out, "%-34s %s", line, usage)
		if fl.DefValue != "" && fl.DefValue != "[]" && fl.DefValue != "0" && fl.DefValue != "false" && fl.DefValue != "0s" {
			fmt.Fprintf(out, " (default %s)", fl.DefValue)
		}
		if env, ok := f.envs[fl.Name]; ok {
			fmt.Fprintf(out, " [$%s]", env)
		}
		fmt.Fprintln(out)
	})
}

// Envs lists every flag with its variable (for the manifests test).
func (f *flags) Envs() map[string]string { return f.envs }

// The values below replace the flag package's own so that a bad value says
// what is wanted ("parse error" does not), on the command line and in a
// variable alike.

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (*intValue) kind() string     { return "int" }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want a whole number")
	}
	*v = intValue(n)
	return nil
}

type boolValue bool

func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }
func (*boolValue) kind() string     { return "" }
func (*boolValue) IsBoolFlag() bool { return true }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want true or false")
	}
	*v = boolValue(b)
	return nil
}

type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }
func (*durationValue) kind() string     { return "duration" }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < 0 {
		return errors.New("want a duration such as 30s, 5m or 1h30m")
	}
	*v = durationValue(d)
	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

type pathList []string

func (l *pathList) String() string { return strings.Join(*l, ":") }
func (*pathList) kind() string     { return "path" }
func (l *pathList) Set(v string) error {
	for _, p := range strings.Split(v, ":") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

type byteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

func (*byteSize) kind() string { return "size" }

func (b *byteSize) String() string {
	v := int64(*b)
	for _, u := range byteUnits[:4] {
		if v >= u.mult && v%u.mult == 0 && (v/u.mult) < 1024 {
			return fmt.Sprintf("%d%s", v/u.mult, u.suffix)
		}
	}
	return strconv.FormatInt(v, 10)
}

func (b *byteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a size such as 512MiB, 2GiB or a number of bytes")
	}
	*b = byteSize(n * mult)
	return nil
}

// parseKV reads k=v pairs of a repeatable flag.
func parseKV(flagName string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flagName, it)
		}
		out[k] = v
	}
	return out, nil
}

// parseAnswers reads step.key=value answers of --answer.
func parseAnswers(items []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, it := range items {
		kv, v, ok := strings.Cut(it, "=")
		step, key, ok2 := strings.Cut(kv, ".")
		if !ok || !ok2 || step == "" || key == "" {
			return nil, fmt.Errorf("--answer %q: want step.key=value", it)
		}
		if out[step] == nil {
			out[step] = map[string]string{}
		}
		out[step][key] = v
	}
	return out, nil
}
