package supervisor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/admission"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// Admission: concurrency groups and tenant limits (package admission keeps
// the lines in NATS KV). A run whose turn has not come is never claimed: it
// stays queued, spends no attempt, and its delivery leaves the run slot.
// Up to MaxWaiting such deliveries per process (TenantWaiting per tenant)
// are parked — held for a lease TTL at a time (queue.Delivery.Hold), outside
// the slots — and started when the bucket's watch says their line moved;
// beyond that a delivery is Nak'ed with a delay that grows with its place in
// the line.

// Defaults of the waiting room.
const (
	DefaultMaxWaiting    = 256
	DefaultTenantWaiting = 32
)

// admitter is the supervisor's side of admission; nil when the fleet has no
// admission bucket.
type admitter struct {
	lines  *admission.Lines
	mirror *admission.Mirror

	mu       sync.Mutex
	parked   int
	byTenant map[string]int
	checked  map[string]time.Time // runs whose left-behind tickets were looked for (dropStale)
	// Parked deliveries whose every ticket went while they waited (the run
	// was cancelled, or settled elsewhere): their next pickup loads the run
	// at once rather than join its tenant's line again.
	vanished map[*queue.Delivery]bool
	// ready hands a parked delivery whose turn may have come to the consumer
	// loop; unbuffered, so its parked goroutine keeps holding it until the
	// loop takes it.
	ready chan *queue.Delivery
	wg    sync.WaitGroup
}

func (s *Supervisor) startAdmission(ctx context.Context) error {
	kv := s.q.AdmissionKV()
	if kv == nil {
		s.log.Warn().Msg("no admission bucket: concurrency groups and tenant limits are not enforced")
		return nil
	}
	m, err := admission.Watch(ctx, kv)
	if err != nil {
		return err
	}
	s.adm = &admitter{lines: admission.New(kv), mirror: m, byTenant: map[string]int{}, checked: map[string]time.Time{}, vanished: map[*queue.Delivery]bool{}, ready: make(chan *queue.Delivery)}
	return nil
}

func (s *Supervisor) stopAdmission() {
	if s.adm != nil {
		s.adm.wg.Wait()
		s.adm.mirror.Stop()
	}
}

// tenantLimit is the number of runs of tenant that may run at once across
// the fleet; 0: no limit.
func (s *Supervisor) tenantLimit(tenant string) int {
	if n, ok := s.cfg.TenantLimits[tenant]; ok {
		return n
	}
	return s.cfg.TenantConcurrency
}

// ticketLimit is the limit of the line ticket t stands in: a group's as its
// ticket carries it (at least 1), a tenant's as this runner is set; 0: the
// line sets no limit here.
func (s *Supervisor) ticketLimit(t admission.Ticket) int {
	if t.Kind == admission.KindTenant {
		return max(s.tenantLimit(t.Name), 0)
	}
	return max(t.Limit, 1)
}

// line is one line a run must pass.
type line struct {
	scope  admission.Scope
	limit  int
	ticket admission.Ticket
}

// linesOf lists the lines of a run: its concurrency group (as stored on the
// run at submit) and its tenant's limit.
func (s *Supervisor) linesOf(run *store.Run) ([]line, error) {
	var out []line
	g, limit, _, ok, err := run.Group()
	if err != nil {
		return nil, err
	}
	if ok {
		out = append(out, line{scope: admission.Group(run.TenantID, g), limit: limit,
			ticket: admission.Ticket{RunID: run.ID, Limit: limit, Tenant: run.TenantID}})
	}
	if n := s.tenantLimit(run.TenantID); n > 0 {
		out = append(out, line{scope: admission.Tenant(run.TenantID), limit: n,
			ticket: admission.Ticket{RunID: run.ID, Tenant: run.TenantID}})
	}
	return out, nil
}

// live says whether a run's lease is held: its mark counts. An unanswered
// read counts as alive.
func (s *Supervisor) live(ctx context.Context) admission.Live {
	return func(runID string) bool {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := s.q.LeaseHolder(lctx, runID)
		return !errors.Is(err, queue.ErrNoLease)
	}
}

// mustWait is the check before the run is loaded: from the bucket's view
// alone, the lines the run is known to be in (its tickets, and its
// tenant's, which it joins here) leave it no place. It reads no run; a run
// it lets through is checked again under its lease. So a flood of one
// tenant's runs costs each waiting delivery a KV write, not a run load and a
// lease.
func (a *attempt) mustWait(ctx context.Context, msg *queue.Message) (admission.Standing, bool) {
	s := a.sup
	if s.adm == nil {
		return admission.Standing{}, false
	}
	s.adm.mu.Lock()
	vanished := s.adm.vanished[a.d]
	delete(s.adm.vanished, a.d)
	s.adm.mu.Unlock()
	if vanished {
		return admission.Standing{}, false // the store says what became of it
	}
	// Its group first: a run its group holds back takes no place in its
	// tenant's line (see groupHolds).
	for _, t := range s.adm.mirror.Tickets(msg.RunID) {
		if t.Kind != admission.KindGroup {
			continue
		}
		limit := s.ticketLimit(t)
		if st := s.adm.mirror.Standing(t.Scope(), msg.RunID, limit, nil); st.Position > limit {
			s.groupHolds(ctx, msg.RunID, msg.TenantID)
			return st, true
		}
	}
	n := s.tenantLimit(msg.TenantID)
	if n <= 0 {
		return admission.Standing{}, false
	}
	sc := admission.Tenant(msg.TenantID)
	rev, err := s.adm.lines.Join(ctx, sc, admission.Ticket{RunID: msg.RunID, Tenant: msg.TenantID})
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = s.adm.mirror.WaitRev(wctx, rev)
		cancel()
	}
	if err != nil {
		return admission.Standing{}, false // the check under the lease decides
	}
	if st := s.adm.mirror.Standing(sc, msg.RunID, n, nil); st.Position > n {
		return st, true
	}
	return admission.Standing{}, false
}

// groupHolds is what a run its concurrency group holds back does in its
// tenant's line: it leaves it (its ticket; a mark, if any, stays), and joins
// it again, at the end, once its group lets it through. A group's line is in
// submission order, a tenant's in pickup order, so run X may be ahead of Y in
// their group while Y is ahead of X in their tenant's line; if Y kept its
// tenant place while its group holds it back behind X, and X waited behind Y
// for its tenant, neither would ever run.
func (s *Supervisor) groupHolds(ctx context.Context, runID, tenant string) {
	for _, t := range s.adm.mirror.Tickets(runID) {
		if t.Kind != admission.KindTenant {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.adm.lines.Withdraw(wctx, t.Scope(), runID)
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Str("run_id", runID).Str("tenant_id", tenant).Msg("leave the tenant's line while the group holds the run back")
		}
	}
}

// admit is the check under the run's lease, before its claim: the run
// joins its lines (a group's ticket is normally made at submit), and, if
// every line leaves it a place, it holds one in each. ok false: it waits
// (outAdmissionWait), holding nothing.
func (a *attempt) admit(ctx context.Context) (outcome, bool) {
	s := a.sup
	if s.adm == nil || a.run.CancelRequested {
		return 0, true // a cancelled run is not made to wait for its cancel
	}
	lines, err := s.linesOf(a.run)
	if err != nil {
		a.log.Warn().Err(err).Str("reason", string(runnerd.ReasonInvalidWorkflow)).Msg("concurrency group")
		return outInvalidWorkflow, false
	}
	if len(lines) == 0 {
		return 0, true
	}
	// Line by line, the group's first (linesOf): a run its group holds back
	// takes no place in its tenant's line (groupHolds).
	var last uint64
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	live := s.live(ctx)
	for _, l := range lines {
		rev, err := s.adm.lines.Join(ctx, l.scope, l.ticket)
		if err != nil {
			a.log.Warn().Err(err).Msg("join admission line")
			return outStoreUnavailable, false
		}
		last = max(last, rev)
		if err := s.adm.mirror.WaitRev(wctx, rev); err != nil {
			return outStoreUnavailable, false
		}
		if st := s.adm.mirror.Standing(l.scope, a.runID, l.limit, live); !st.Admitted {
			if l.scope.Kind == admission.KindGroup {
				s.groupHolds(ctx, a.runID, a.run.TenantID)
			}
			a.standing = &st
			return outAdmissionWait, false
		}
	}
	for _, l := range lines {
		rev, err := s.adm.lines.Hold(ctx, l.scope, a.runID, s.cfg.RunnerID)
		if err != nil {
			a.log.Warn().Err(err).Msg("hold admission place")
			a.releasePlaces(lines)
			return outStoreUnavailable, false
		}
		last = max(last, rev)
	}
	a.held = lines
	if err := s.adm.mirror.WaitRev(wctx, last); err != nil {
		a.releasePlaces(lines)
		return outStoreUnavailable, false
	}
	// Of two runners that saw one free place at once, the one whose mark came
	// later sees the other's now, and steps back.
	for _, l := range lines {
		if s.adm.mirror.Contended(l.scope, a.runID, l.limit, live) {
			a.releasePlaces(lines)
			st := s.adm.mirror.Standing(l.scope, a.runID, l.limit, nil)
			a.standing = &st
			return outAdmissionWait, false
		}
	}
	for _, l := range lines {
		a.log.Debug().Str("line", l.scope.String()).Int("limit", l.limit).Msg("admitted")
	}
	return 0, true
}

// releasePlaces deletes the run's marks: it holds no place any more.
func (a *attempt) releasePlaces(lines []line) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 5*time.Second)
	defer cancel()
	for _, l := range lines {
		if err := a.sup.adm.lines.Release(ctx, l.scope, a.runID); err != nil {
			a.log.Warn().Err(err).Str("line", l.scope.String()).Msg("release admission place")
		}
	}
	a.held = nil
}

// leaveLines is the admission part of the conclusion: the places the
// attempt held are given back (not after a lost lease: they are the new
// owner's), and a run that settled leaves its lines, as does a delivery that
// is termed (it never comes back to take its place). A delivery whose
// message names another tenant than its run's leaves only the line of the
// message's tenant, which it joined before the run was loaded: the run's own
// lines are its own messages'.
func (a *attempt) leaveLines(written runnerd.Status, out outcome, act action) {
	s := a.sup
	if s.adm == nil || out == outLeaseLost || out == outAdmissionWait {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 5*time.Second)
	defer cancel()
	if out == outTenantMismatch {
		if a.msg != nil {
			if err := s.adm.lines.Leave(ctx, admission.Tenant(a.msg.TenantID), a.runID); err != nil {
				a.log.Warn().Err(err).Msg("leave admission line")
			}
		}
		return
	}
	settled := written.Settled() || out == outStale || out == outRunNotFound || act == actTerm
	if !settled {
		if a.held != nil {
			a.releasePlaces(a.held)
		}
		return
	}
	s.leaveAllLines(ctx, a.runID)
	for _, l := range a.held { // a mark without a ticket (a line left meanwhile)
		_ = s.adm.lines.Leave(ctx, l.scope, a.runID)
	}
	a.held = nil
}

// leaveAllLines takes a settled run out of every line it has a ticket in:
// a ticket left behind would wait ahead of the runs behind it forever.
func (s *Supervisor) leaveAllLines(ctx context.Context, runID string) {
	if s.adm == nil {
		return
	}
	for _, t := range s.adm.mirror.Tickets(runID) {
		if err := s.adm.lines.Leave(ctx, t.Scope(), runID); err != nil {
			s.log.Warn().Err(err).Str("run_id", runID).Msg("leave admission line")
		}
	}
}

// park keeps a waiting delivery out of the run slots until its line moves,
// then hands it to the consumer loop (ready). false: the waiting room is
// full, and the delivery is to be Nak'ed with a delay.
func (s *Supervisor) park(ctx context.Context, a *attempt) bool {
	adm := s.adm
	tenant := ""
	if a.msg != nil {
		tenant = a.msg.TenantID
	}
	adm.mu.Lock()
	if adm.parked >= s.cfg.MaxWaiting || adm.byTenant[tenant] >= s.cfg.TenantWaiting {
		adm.mu.Unlock()
		return false
	}
	adm.parked++
	adm.byTenant[tenant]++
	adm.mu.Unlock()
	s.m.waiting.WithLabelValues(onAdmission).Inc()
	s.m.waits.WithLabelValues(onAdmission).Inc()
	d, msg := a.delivery(), a.msg
	hadTickets := len(adm.mirror.Tickets(msg.RunID)) > 0
	adm.wg.Add(1)
	go func() {
		defer adm.wg.Done()
		defer func() {
			adm.mu.Lock()
			adm.parked--
			adm.byTenant[tenant]--
			adm.mu.Unlock()
			s.m.waiting.WithLabelValues(onAdmission).Dec()
		}()
		// Held for a lease TTL at a time, not marked in progress (which
		// would keep it for AckWait): if this process dies, the run comes
		// back to another runner about when the places its holder's death
		// freed do, and waiting spends no delivery.
		hold := s.q.Config().LeaseTTL
		_ = d.Hold(hold)
		keepAlive := time.NewTicker(max(hold/3, 250*time.Millisecond))
		defer keepAlive.Stop()
		// A holder whose runner died frees its place when its lease expires,
		// which no watch event says: the line is looked at every second too.
		recheck := time.NewTicker(time.Second)
		defer recheck.Stop()
		var last time.Time
		for {
			select {
			case <-ctx.Done():
				_ = d.NakWithDelay(s.cfg.RetryDelay)
				return
			case <-keepAlive.C:
				_ = d.Hold(hold)
				continue
			case <-adm.mirror.Changed():
			case <-recheck.C:
			}
			// A busy bucket changes many times a second; a line is looked at
			// at most every parkedGap.
			if wait := parkedGap - time.Since(last); wait > 0 {
				sleep(ctx, wait)
			}
			last = time.Now()
			if !s.turnMayHaveCome(ctx, msg) {
				s.dropStale(ctx, msg.RunID)
				continue
			}
			if hadTickets && len(adm.mirror.Tickets(msg.RunID)) == 0 {
				adm.mu.Lock()
				adm.vanished[d] = true
				adm.mu.Unlock()
			}
			for {
				select {
				case adm.ready <- d:
					// The attempt marks it in progress once it runs; until
					// then it has AckWait.
					_ = d.InProgress()
				case <-keepAlive.C:
					_ = d.Hold(hold)
					continue
				case <-ctx.Done():
					adm.mu.Lock()
					delete(adm.vanished, d)
					adm.mu.Unlock()
					_ = d.NakWithDelay(s.cfg.RetryDelay)
				}
				return
			}
		}
	}()
	return true
}

// turnMayHaveCome is the parked run's check: every line it is in would
// admit it now. It is checked again under the lease.
func (s *Supervisor) turnMayHaveCome(ctx context.Context, msg *queue.Message) bool {
	live := s.live(ctx)
	// Tickets come sorted by kind: its group's line is looked at first.
	for _, t := range s.adm.mirror.Tickets(msg.RunID) {
		limit := s.ticketLimit(t)
		if limit == 0 {
			continue
		}
		if !s.adm.mirror.Standing(t.Scope(), msg.RunID, limit, live).Admitted {
			if t.Kind == admission.KindGroup {
				s.groupHolds(ctx, msg.RunID, msg.TenantID)
			}
			return false
		}
	}
	return true
}

// Left-behind tickets: a ticket older than staleTicketAge at the front of a
// line that does not move is checked against the store, each run at most
// every staleTicketAge, up to staleFront per line.
const (
	staleTicketAge = 10 * time.Second
	staleFront     = 16
)

// dropStale takes out of the lines of a waiting run the tickets at their
// front whose runs have settled or do not exist: a runner that died after
// the run's end and before it left its lines, or a write that failed, left
// them there, and they would wait ahead of the line for good. Its cost is
// bounded: only tickets older than staleTicketAge, each run read at most
// every staleTicketAge.
func (s *Supervisor) dropStale(ctx context.Context, runID string) {
	adm := s.adm
	for _, t := range adm.mirror.Tickets(runID) {
		limit := s.ticketLimit(t)
		if limit == 0 {
			continue
		}
		sc := t.Scope()
		for _, id := range adm.mirror.Front(sc, runID, min(limit, staleFront), staleTicketAge) {
			adm.mu.Lock()
			if len(adm.checked) > 4096 {
				clear(adm.checked)
			}
			last, seen := adm.checked[id]
			fresh := seen && time.Since(last) < staleTicketAge
			if !fresh {
				adm.checked[id] = time.Now()
			}
			adm.mu.Unlock()
			if fresh {
				continue
			}
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			run, err := s.store.Get(gctx, id)
			cancel()
			var why string
			switch {
			case errors.Is(err, store.ErrNotFound):
				why = "no such run"
			case err != nil:
				continue // the next look tries again
			case run.Status.Settled():
				why = "the run is " + string(run.Status)
			default:
				continue
			}
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = adm.lines.Leave(lctx, sc, id)
			cancel()
			if err != nil {
				s.log.Warn().Err(err).Str("run_id", id).Msg("drop a left-behind admission ticket")
				continue
			}
			s.log.Info().Str("run_id", id).Str("line", sc.String()).Str("waiter", runID).Str("why", why).
				Msg("dropped an admission ticket its run left behind")
		}
	}
}

// waitDelay is the Nak delay of a waiting run the room has no place for:
// about a quarter second per run ahead of it, from 1 s to a minute.
func waitDelay(st *admission.Standing) time.Duration {
	if st == nil {
		return time.Second
	}
	return min(max(time.Duration(st.Position)*250*time.Millisecond, time.Second), time.Minute)
}

// parkedGap is the least time between two looks of a parked run at its
// lines.
const parkedGap = 100 * time.Millisecond

// onAdmission is the `on` label of a run waiting for its turn.
const onAdmission = "admission"

// readyParked takes up to n parked deliveries whose turn may have come.
func (s *Supervisor) readyParked(n int) []*queue.Delivery {
	if s.adm == nil {
		return nil
	}
	var out []*queue.Delivery
	for len(out) < n {
		select {
		case d := <-s.adm.ready:
			out = append(out, d)
		default:
			return out
		}
	}
	return out
}

// parkedWait bounds a fetch's wait while runs are parked: one whose turn
// comes is started by the consumer loop, which must not sit in a long fetch.
const parkedWait = 250 * time.Millisecond

// fetch fetches up to n new deliveries.
func (s *Supervisor) fetch(ctx context.Context, n int) ([]*queue.Delivery, error) {
	wait := s.cfg.FetchWait
	if s.adm != nil {
		s.adm.mu.Lock()
		if s.adm.parked > 0 {
			wait = min(wait, parkedWait)
		}
		s.adm.mu.Unlock()
	}
	return s.q.Fetch(ctx, n, wait)
}

// waitForTurn ends an attempt whose run must wait for its turn: nothing was
// written and no place is held; the lease is given back, and the delivery is
// parked, or Nak'ed with a delay by the run's place in its line.
func (a *attempt) waitForTurn(ctx context.Context) {
	s := a.sup
	if a.lease != nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := a.lease.Release(rctx); err != nil {
			a.log.Debug().Err(err).Msg("release lease")
		}
		cancel()
	}
	ev := a.log.Debug()
	if st := a.standing; st != nil {
		ev = ev.Str("line", st.Scope.String()).Int("position", st.Position).Int("holders", st.Holders).Int("limit", st.Limit)
	}
	if a.msg != nil {
		s.dropStale(ctx, a.msg.RunID)
	}
	if s.park(s.runCtx, a) {
		ev.Msg("waiting for its turn: parked")
		return
	}
	delay := waitDelay(a.standing)
	ev.Dur("delay_ms", delay).Msg("waiting for its turn: redelivered later")
	s.m.waits.WithLabelValues(onAdmission).Inc()
	s.m.deliveries.WithLabelValues(actNakDelay.String()).Inc()
	if err := a.delivery().NakWithDelay(delay); err != nil {
		a.log.Warn().Err(err).Msg("nak a waiting run")
	}
}
