package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/contain"
)

// spares keeps runexec children started ahead of runs (Config.Prestart), so
// that a run does not wait for a child's start: exec of runexec, its Go
// runtime, go-plugin's handshake and the move into a cgroup, the largest
// part of a short run's path (docs/benchmarks.md, "Figures behind the code"). A spare serves one run, like any child, and is never reused:
// the isolation is the same, only the start moved off the run's path.
//
// A spare is started with its own directory as working directory, HOME and
// TMPDIR (the socket's directory, runnerd's own) and its own cgroup with the
// configured limits; the run's HOME and TMPDIR reach its steps through the
// request. A spare is replaced when the run that took it ends (refill).
type spares struct {
	s      *Supervisor
	ready  chan *spare
	tokens chan struct{} // one per spare that may be started
	stop   chan struct{}
	done   chan struct{}
	n      int // spares started so far: names their cgroups
}

// spare is one started child waiting for a run.
type spare struct {
	proc   *child.Process
	cg     *contain.Cgroup // nil without a writable cgroup hierarchy
	dir    string          // its socket, working directory, HOME and TMPDIR
	setLog func(zerolog.Logger)
}

func (s *Supervisor) startSpares(n int) *spares {
	sp := &spares{
		s:      s,
		ready:  make(chan *spare, n),
		tokens: make(chan struct{}, n),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range n {
		sp.tokens <- struct{}{}
	}
	go sp.fill()
	return sp
}

// fill starts a spare for every token, one at a time, until close.
func (p *spares) fill() {
	defer close(p.done)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = time.Second, time.Minute
	for {
		select {
		case <-p.stop:
			return
		case <-p.tokens:
		}
		sp, err := p.start()
		if err != nil {
			p.s.log.Warn().Err(err).Msg("start a spare runexec: retrying; runs start their own meanwhile")
			p.tokens <- struct{}{}
			select {
			case <-p.stop:
				return
			case <-time.After(b.NextBackOff()):
			}
			continue
		}
		b.Reset()
		p.ready <- sp // never blocks: a spare exists only for a token taken
	}
}

func (p *spares) start() (*spare, error) {
	s := p.s
	p.n++
	cg, err := contain.NewCgroup(filepath.Join(s.cgroupParentName(), fmt.Sprintf("spare-%d", p.n)), s.cfg.MemoryLimit, s.cfg.PidsLimit)
	if err != nil {
		cg = nil // containment by process group and rlimits only, as for any child
	}
	dir, err := s.newSocketDir()
	if err != nil {
		cg.Discard()
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	log := s.log.With().Str("source", "runexec").Logger()
	pluginLog, setLog := newSwitchableHCLogger(log)
	proc, err := s.launch(s.childCmd(dir, dir, dir), dir, cg, pluginLog, s.log)
	if err != nil {
		cg.Discard()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &spare{proc: proc, cg: cg, dir: dir, setLog: setLog}, nil
}

// take returns a live spare, or nil when none is ready (or p is nil): the
// caller then starts a child itself. The caller calls refill when its run
// is over.
func (p *spares) take() *spare {
	if p == nil {
		return nil
	}
	for {
		select {
		case sp := <-p.ready:
			select {
			case <-sp.proc.Exited(): // died while waiting (killed from outside)
				p.s.log.Warn().Int("pid", sp.proc.Pid()).Msg("a spare runexec had exited: discarded")
				sp.discard()
				p.refill()
				continue
			default:
				return sp
			}
		default:
			return nil
		}
	}
}

// refill lets one more spare be started: called when the run that took one
// has ended, not when it took it, because on cgroup v1 moving the new spare
// into its cgroup holds a kernel lock that every fork and exit waits for (an
// RCU grace period): a refill during the run slowed the run's own steps.
func (p *spares) refill() {
	if p != nil {
		p.tokens <- struct{}{}
	}
}

// close stops refilling and kills the spares that wait.
func (p *spares) close() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	for {
		select {
		case sp := <-p.ready:
			sp.discard()
		default:
			return
		}
	}
}

func (sp *spare) discard() {
	sp.proc.Close()
	children.remove(sp.proc.Pid())
	sp.cg.Discard()
	_ = os.RemoveAll(sp.dir)
}
