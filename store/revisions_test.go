package store

import (
	"context"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/runnerd/runnerd"
)

// On the revision path the run document may lag behind its revisions (a
// writer stopped between the two, or its rewrite arrived after a later
// one): readers and writers follow the revisions, and a reader puts the
// document right.
func TestRevisionReadersFollowPastALaggingRunDocument(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	if !s.revision {
		t.Skip("revision path only")
	}
	ctx := context.Background()
	mustCreate(t, s, "lag")
	if _, err := s.Claim(ctx, "lag", "r", 1); err != nil {
		t.Fatal(err)
	}
	old, err := s.runs.FindOne(ctx, bson.D{{Key: "_id", Value: "lag"}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, "lag", 1, Batch{First: 1, Events: []runnerd.Event{{Type: runnerd.EventLog, Text: "a"}}}); err != nil {
		t.Fatal(err)
	}
	steps := runnerd.StepStates{"fetch": {Status: runnerd.StepSucceeded}}
	if _, err := s.Finish(ctx, "lag", 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, steps); err != nil {
		t.Fatal(err)
	}
	// A late rewrite puts the document back two revisions.
	if _, err := s.runs.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "lag"}}, old); err != nil {
		t.Fatal(err)
	}
	listed, err := s.List(ctx, ListOptions{Status: runnerd.StatusRunning})
	if err != nil || len(listed) != 0 {
		t.Fatalf("list running: %v %v; the run is succeeded", runIDs(listed), err)
	}
	evs, err := s.Events(ctx, "lag", 0, 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("events: %d %v", len(evs), err)
	}
	// A fenced write is checked against the latest revision, not the document.
	if _, err := s.SetStatus(ctx, "lag", 1, runnerd.StatusFailed, runnerd.ReasonStepFailed); !errors.Is(err, ErrTerminal) {
		t.Fatalf("write to the finished run: %v, want ErrTerminal", err)
	}
	r := mustGet(t, s, "lag")
	if r.Status != runnerd.StatusSucceeded || r.EventSeq != 1 || r.Steps["fetch"] == nil {
		t.Fatalf("get: %+v", r)
	}
	var doc bson.M
	if err := s.runs.FindOne(ctx, bson.D{{Key: "_id", Value: "lag"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["status"] != string(runnerd.StatusSucceeded) || asInt64(doc[revisionField]) != 3 {
		t.Fatalf("the run document after a read: status %v revision %v, want succeeded at revision 3", doc["status"], doc[revisionField])
	}
	listed, err = s.List(ctx, ListOptions{Status: runnerd.StatusSucceeded})
	if err != nil || len(listed) != 1 || listed[0].EventSeq != 1 {
		t.Fatalf("list succeeded: %v %v", runIDs(listed), err)
	}
}

// The revision path applies each update operator the store uses as MongoDB
// does (the conditional path leaves it to the server); the same
// expectations hold on both.
func TestUpdateOperatorsOnBothPaths(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "ops")
	if _, err := s.Claim(ctx, "ops", "r", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Finish(ctx, "ops", 1, runnerd.StatusFailed, runnerd.ReasonStepFailed, runnerd.StepStates{"fetch": {Status: runnerd.StepFailed}}); err != nil {
		t.Fatal(err)
	}
	first, err := s.Retry(ctx, "ops", false) // $set, $unset, $inc, $push
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "ops", "r", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStatus(ctx, "ops", 2, runnerd.StatusCancelled, runnerd.ReasonCancelled); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Retry(ctx, "ops", true); err != nil {
		t.Fatal(err)
	}
	r := mustGet(t, s, "ops")
	if first.Generation != 1 || r.Generation != 2 || r.Status != runnerd.StatusQueued || r.Reason != "" || !r.FinishedAt.IsZero() || r.Steps != nil {
		t.Fatalf("after two retries: generation %d/%d status %s reason %q finished %v steps %v", first.Generation, r.Generation, r.Status, r.Reason, r.FinishedAt, r.Steps)
	}
	if len(r.History) != 2 || r.History[0].Status != runnerd.StatusFailed || r.History[1].Status != runnerd.StatusCancelled || !r.History[1].FromScratch {
		t.Fatalf("history %+v", r.History)
	}
	if _, err := s.Resume(ctx, "ops", nil); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("resume of a queued run: %v", err)
	}
	if _, err := applyUpdateRefuses(); err == nil {
		t.Fatal("an operator the revision path does not know was accepted")
	}
}

func applyUpdateRefuses() (bson.M, error) {
	set, _, err := applyUpdate(bson.M{}, bson.D{{Key: "$addToSet", Value: bson.D{{Key: "x", Value: 1}}}})
	return set, err
}
