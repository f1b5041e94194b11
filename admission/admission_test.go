package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd/admission"
	"github.com/runnerd/runnerd/devstack/devstacktest"
)

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	s := devstacktest.Start(t)
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "adm", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestLine: a line of three, limit 1, through the states a run goes through:
// first in line admitted, the next wait by position; a live mark holds the
// place, a mark whose lease is gone does not; the second check sees a rival.
func TestLine(t *testing.T) {
	kv := bucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := admission.Watch(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	lines := admission.New(kv)
	g := admission.Group("acme", "deploy-prod")
	var last uint64
	for _, id := range []string{"r1", "r2", "r3"} {
		if last, err = lines.Join(ctx, g, admission.Ticket{RunID: id, Limit: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if again, err := lines.Join(ctx, g, admission.Ticket{RunID: "r1", Limit: 1}); err != nil || again >= last {
		t.Errorf("joining again: revision %d (%v), want r1's first one", again, err)
	}
	if err := m.WaitRev(ctx, last); err != nil {
		t.Fatal(err)
	}
	alive := map[string]bool{}
	live := func(id string) bool { return alive[id] }
	check := func(id string, admitted bool, position, holders int) {
		t.Helper()
		st := m.Standing(g, id, 1, live)
		if st.Admitted != admitted || st.Position != position || st.Holders != holders {
			t.Errorf("%s: %+v, want admitted %v position %d holders %d", id, st, admitted, position, holders)
		}
	}
	check("r1", true, 1, 0)
	check("r2", false, 2, 0)
	check("r3", false, 3, 0)
	check("nope", false, 0, 0)

	rev, err := lines.Hold(ctx, g, "r1", "runner-a")
	if err != nil {
		t.Fatal(err)
	}
	_ = m.WaitRev(ctx, rev)
	alive["r1"] = true
	check("r2", false, 1, 1) // r1 holds the place
	alive["r1"] = false
	check("r2", true, 1, 0) // r1's runner died: its place is free
	check("r1", true, 1, 0) // and r1, back, is first again

	// r2 took the place while r1 was away; r1 comes back and also holds:
	// the later of the two sees the other in its second check.
	rev, _ = lines.Hold(ctx, g, "r2", "runner-b")
	_ = m.WaitRev(ctx, rev)
	alive["r1"], alive["r2"] = true, true
	if !m.Contended(g, "r2", 1, live) || !m.Contended(g, "r1", 1, live) {
		t.Error("two marks of a line of one place: not contended")
	}
	if err := lines.Release(ctx, g, "r2"); err != nil {
		t.Fatal(err)
	}
	if err := lines.Leave(ctx, g, "r1"); err != nil {
		t.Fatal(err)
	}
	rev, _ = kv.Put(ctx, "other", []byte("x")) // a later revision to wait for
	_ = m.WaitRev(ctx, rev)
	check("r2", true, 1, 0)
	check("r3", false, 2, 0)
	members, err := lines.Members(ctx, g)
	if err != nil || len(members) != 2 || members[0].RunID != "r2" || members[1].RunID != "r3" || members[0].Limit != 1 {
		t.Errorf("members %+v, %v; want r2, r3", members, err)
	}
	if got := m.Tickets("r3"); len(got) != 1 || got[0].Name != "deploy-prod" || got[0].Kind != admission.KindGroup {
		t.Errorf("tickets of r3: %+v", got)
	}
}
