// Package cli is what runnerd's and runexec's command lines share: flags
// that also read RUNNERD_* variables (on spf13/pflag, under spf13/cobra
// commands), the exit-code table and the error classes behind it, the
// progress of a followed run, and the small parsers both binaries need.
package cli

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// envAnnotation is the pflag annotation naming a flag's variable.
const envAnnotation = "runnerd_env"

// EnvName is the variable of a flag: --lease-ttl → RUNNERD_LEASE_TTL.
func EnvName(flagName string) string {
	return "RUNNERD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Flags adds flags to a pflag.FlagSet. By default a flag also reads its
// RUNNERD_* variable when it is not given on the command line (ApplyEnv);
// NoEnv on the returned Flag keeps a flag that describes one invocation
// (--wait, --id) out of the environment, where a leftover would silently
// apply to every later command. Every value says what it wants when it
// is refused ("want a duration such as 30s, 5m or 1h30m").
type Flags struct {
	FS    *pflag.FlagSet
	NoEnv bool // no flag of this set reads a variable (runexec's)
}

// Flag is one registered flag.
type Flag struct{ f *pflag.Flag }

// NoEnv removes the flag's variable.
func (fl Flag) NoEnv() Flag {
	delete(fl.f.Annotations, envAnnotation)
	return fl
}

// Var adds a flag of any value, with its variable; short may be "".
func (f Flags) Var(v pflag.Value, name, short, usage string) Flag {
	fl := &pflag.Flag{Name: name, Shorthand: short, Usage: usage, Value: v, DefValue: v.String(),
		Annotations: map[string][]string{envAnnotation: {EnvName(name)}}}
	if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		fl.NoOptDefVal = "true"
	}
	if f.NoEnv {
		delete(fl.Annotations, envAnnotation)
	}
	f.FS.AddFlag(fl)
	return Flag{fl}
}

func (f Flags) String(p *string, name, def, usage string) Flag {
	*p = def
	return f.Var((*stringValue)(p), name, "", usage)
}

func (f Flags) Int(p *int, name string, def int, usage string) Flag {
	*p = def
	return f.Var((*intValue)(p), name, "", usage)
}

func (f Flags) Bool(p *bool, name string, def bool, usage string) Flag {
	*p = def
	return f.Var((*boolValue)(p), name, "", usage)
}

func (f Flags) Duration(p *time.Duration, name string, def time.Duration, usage string) Flag {
	*p = def
	return f.Var((*durationValue)(p), name, "", usage)
}

// Bytes is a size such as 512MiB, 2GiB or 1000000.
func (f Flags) Bytes(p *int64, name string, def int64, usage string) Flag {
	*p = def
	return f.Var((*byteSize)(p), name, "", usage)
}

// List is a repeatable flag (--var k=v --var k2=v2); it has no variable.
func (f Flags) List(p *[]string, name, usage string) Flag {
	return f.Var((*stringList)(p), name, "", usage).NoEnv()
}

// Paths is a repeatable flag of paths whose variable holds a
// colon-separated list (like PATH).
func (f Flags) Paths(p *[]string, name, usage string) Flag {
	return f.Var((*pathList)(p), name, "", usage)
}

// Given reports whether a flag was set, on the command line or through its
// variable, rather than left at its default.
func (f Flags) Given(name string) bool { return f.FS.Changed(name) }

// ApplyEnv fills every flag not given on the command line from its
// variable. Every bad value is reported, each on its own line naming the
// variable, as one UsageError.
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		env := fl.Annotations[envAnnotation]
		if len(env) == 0 || fl.Changed {
			return
		}
		v, ok := lookup(env[0])
		if !ok {
			return
		}
		if err := fs.Set(fl.Name, v); err != nil {
			// pflag's error names the flag; the variable was given. A
			// refused Set leaves the value as it was.
			if verr := fl.Value.Set(v); verr != nil {
				err = verr
			}
			errs = append(errs, fmt.Errorf("%s=%q: %w", env[0], v, err))
		}
	})
	if len(errs) == 0 {
		return nil
	}
	return Usage(errors.Join(errs...))
}

// Envs lists every flag of fs that reads a variable, flag name → variable.
func Envs(fs *pflag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.VisitAll(func(fl *pflag.Flag) {
		if env := fl.Annotations[envAnnotation]; len(env) > 0 {
			out[fl.Name] = env[0]
		}
	})
	return out
}

// The values below say what is wanted when a value is refused, on the
// command line and in a variable alike (strconv's "invalid syntax" does
// not). pflag prints them as: invalid argument "x" for "--limit" flag: want
// a whole number.

// StringValue is a string flag's value, for Flags.Var (a flag with a
// short name).
func StringValue(p *string, def string) pflag.Value {
	*p = def
	return (*stringValue)(p)
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (*stringValue) Type() string         { return "string" }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (*intValue) Type() string     { return "int" }
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
func (*boolValue) Type() string     { return "bool" }
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
func (*durationValue) Type() string     { return "duration" }
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
func (*stringList) Type() string         { return "k=v" }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

type pathList []string

func (l *pathList) String() string { return strings.Join(*l, ":") }
func (*pathList) Type() string     { return "path" }
func (l *pathList) Set(v string) error {
	for _, p := range strings.Split(v, ":") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

type byteSize int64

// binaryUnits print a size exactly in the largest unit that divides it
// (go-humanize's IBytes rounds, which a default in --help must not).
var binaryUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

func (*byteSize) Type() string { return "size" }

func (b *byteSize) String() string {
	v := int64(*b)
	for _, u := range binaryUnits {
		if v >= u.mult && v%u.mult == 0 {
			return fmt.Sprintf("%d%s", v/u.mult, u.suffix)
		}
	}
	return strconv.FormatInt(v, 10)
}

// Set reads a size as go-humanize does: 512MiB, 2 GiB, 1.5GB, 1000000
// (KiB and MiB are powers of 1024, KB and MB of 1000).
func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil || n > math.MaxInt64 {
		return errors.New("want a size such as 512MiB, 2GiB or a number of bytes")
	}
	*b = byteSize(n)
	return nil
}
