package queue

import (
	"errors"
	"testing"
	"time"
)

// A message read back by its stream sequence names its run and generation;
// deleting it twice is fine; then it is gone.
func TestMessageBySeqAndDelete(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	publish(t, q, "run-7", 3)
	d := fetchOne(t, q, 2*time.Second)
	meta, err := d.msg.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	seq := meta.Sequence.Stream

	m, err := q.Message(ctx, seq)
	if err != nil {
		t.Fatalf("Message(%d): %v", seq, err)
	}
	if m.RunID() != "run-7" || m.Generation() != 3 {
		t.Fatalf("run %q generation %d, want run-7 3", m.RunID(), m.Generation())
	}
	if decoded, err := Decode(m.Data); err != nil || decoded.RunID != "run-7" {
		t.Fatalf("Decode: %+v %v", decoded, err)
	}
	for i := range 2 {
		if err := q.DeleteMessage(ctx, seq); err != nil {
			t.Fatalf("DeleteMessage #%d: %v", i+1, err)
		}
	}
	if _, err := q.Message(ctx, seq); !errors.Is(err, ErrMessageGone) {
		t.Fatalf("Message after delete = %v, want ErrMessageGone", err)
	}
}
