package supervisor

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/contain"
)

// setUpSandbox finds what sandbox this machine gives each run (Probe starts
// runexec in each candidate setup) and what cgroups and rlimits hold it; with
// --sandbox=required a missing layer refuses the start.
func (s *Supervisor) setUpSandbox() error {
	sb, err := contain.Probe(s.cfg.RunexecPath, s.cfg.Sandbox)
	if sb != nil {
		sb.Hide = s.sockRoot
	}
	s.sandbox = sb
	s.layers = append(sb.Layers(), s.cgroupLayer(), s.rlimitLayer())
	if err != nil {
		return err
	}
	if s.cfg.Sandbox.Mode == contain.ModeRequired {
		for _, l := range s.layers {
			if !l.On && l.Name != contain.LayerUserNS {
				return fmt.Errorf("%w: %s (%s)", contain.ErrSandboxMissing, l.Name, l.Detail)
			}
		}
	}
	return nil
}

// cgroupLayer makes and removes a cgroup to see whether runs get one.
func (s *Supervisor) cgroupLayer() contain.Layer {
	l := contain.Layer{Name: contain.LayerCgroup}
	v2, mem, pids := contain.Roots()
	cg, err := contain.NewCgroup(filepath.Join(s.cgroupParentName(), "probe"), s.cfg.MemoryLimit, s.cfg.PidsLimit)
	if err != nil {
		l.Detail = fmt.Sprintf("no writable cgroup (v2 with memory: %t, v1 memory: %t, v1 pids: %t): %v", v2 != "", mem != "", pids != "", err)
		return l
	}
	cg.Discard()
	l.On = true
	limits := fmt.Sprintf("memory %d bytes, pids %d (0: no limit)", s.cfg.MemoryLimit, s.cfg.PidsLimit)
	switch {
	case v2 != "":
		l.Detail = "cgroup v2: " + limits
	default:
		var ctrls []string
		if mem != "" {
			ctrls = append(ctrls, "memory")
		}
		if pids != "" {
			ctrls = append(ctrls, "pids")
		}
		l.Detail = "cgroup v1 (" + strings.Join(ctrls, ", ") + "): " + limits
	}
	return l
}

func (s *Supervisor) rlimitLayer() contain.Layer {
	lim := func(n uint64, unit string) string {
		if n == 0 {
			return "unlimited"
		}
		return strconv.FormatUint(n, 10) + unit
	}
	return contain.Layer{Name: contain.LayerRlimits, On: true, Detail: fmt.Sprintf("open files %s, file size %s, cpu time %s",
		lim(s.cfg.NoFileLimit, ""), lim(s.cfg.FileSizeMax, " bytes"), lim(s.cfg.CPUTimeMax, " s"))}
}

// logSandbox says at start which layers hold every run, and exports them
// as runnerd_sandbox_layer{layer}.
func (s *Supervisor) logSandbox() {
	ev := s.log.Info().Str("sandbox", string(s.cfg.Sandbox.Mode)).Int("landlock_abi", s.sandbox.Landlock)
	d := zerolog.Dict()
	for _, l := range s.layers {
		state := "off"
		if l.On {
			state = "on"
		}
		d = d.Str(l.Name, state+": "+l.Detail)
		s.m.sandboxLayer.WithLabelValues(l.Name).Set(b2f(l.On))
	}
	ev.Dict("layers", d).Msg("sandbox")
	for _, l := range s.layers {
		if !l.On && s.cfg.Sandbox.Mode == contain.ModeAuto && l.Name != contain.LayerUserNS {
			s.log.Warn().Str("layer", l.Name).Str("why", l.Detail).Msg("sandbox layer missing: runs go without it")
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func newSandboxMetric(f promauto.Factory) *prometheus.GaugeVec {
	return f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "runnerd_sandbox_layer",
		Help: "1 if the sandbox layer (pid_namespace, user_namespace, no_capabilities, landlock_fs, landlock_scope, network_none, cgroup, rlimits) holds every run of this process, else 0.",
	}, []string{"layer"})
}
