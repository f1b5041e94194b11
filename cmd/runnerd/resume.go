package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

func runResume(ctx context.Context, env *cmdEnv, args []string) int {
	var (
		cfg        clientConfig
		answerList []string
		wait       bool
		asJSON     bool
	)
	f := newFlags("resume", `usage: runnerd resume ID --answer step.key=value... [--wait] [--json]

Answers a paused run's human steps and queues it again. Repeating a resume
whose message was not published (the command failed half-way) queues it again
safely. With --wait, follows the run and exits like submit --wait:
0 succeeded, 1 failed, 2 invalid usage, 3 paused, 4 cancelled.`, env.stderr)
	cfg.register(f)
	f.List(&answerList, "answer", "answer of a human step: step.key=value (repeatable)")
	f.fs.BoolVar(&wait, "wait", false, "follow the run until it finishes or pauses again; exit with its status")
	f.fs.BoolVar(&asJSON, "json", false, "with --wait, print the run's events as JSON lines on stdout")
	pos, code, ok := parseArgs(f, args, env.stderr)
	if !ok {
		return code
	}
	id, ok := oneArg("resume", "run id", pos, env.stderr)
	if !ok {
		return exitUsage
	}
	answers, err := parseAnswers(answerList)
	if err != nil {
		fmt.Fprintf(env.stderr, "resume: %v\n", err)
		return exitUsage
	}
	if len(answers) == 0 {
		fmt.Fprintln(env.stderr, "resume: want at least one --answer step.key=value")
		return exitUsage
	}
	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd resume")
	if err != nil {
		return fail(env, "resume", cfg, err)
	}
	defer c.Close()

	r, err := getRun(ctx, c.st, id)
	if err != nil {
		return fail(env, "resume", cfg, err)
	}
	if err := checkAnswers(r, answers); err != nil {
		fmt.Fprintf(env.stderr, "resume: %v\n", err)
		return exitUsage
	}
	from := r.EventSeq // --wait shows what happens from here on
	r, err = resumeOrReuse(ctx, env, c.st, r, answers)
	if err != nil {
		return fail(env, "resume", cfg, err)
	}
	if _, err := publishRun(ctx, c, r, &queue.Resume{Answers: r.Answers}); err != nil {
		return fail(env, "resume", cfg, fmt.Errorf("%w\nrun %s was resumed but is not queued yet: repeat the command to queue it", err, id))
	}
	fmt.Fprintf(env.stdout, "run %s resumed\n", id)
	if !wait {
		return exitOK
	}
	return waitRun(ctx, env, c.st, id, from, asJSON)
}

// checkAnswers refuses answers to steps that are not human steps of the
// run's workflow: they would be stored and never read.
func checkAnswers(r *store.Run, answers map[string]map[string]string) error {
	var bad []string
	for step, kv := range answers {
		if !humanStep(r.Workflow, step) {
			bad = append(bad, fmt.Sprintf("%q is not a human step of run %s", step, r.ID))
			continue
		}
		for k, v := range kv {
			if strings.ContainsAny(k, ".$") {
				bad = append(bad, fmt.Sprintf("answer key %q of step %q: no '.' or '$'", k, step))
			}
			if len(v) > workflow.MaxAnswerBytes {
				bad = append(bad, fmt.Sprintf("answer %s.%s is %d bytes: the limit is %d (%d KiB)", step, k, len(v), workflow.MaxAnswerBytes, workflow.MaxAnswerBytes>>10))
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	var waiting []string
	for _, id := range stepOrder(r) {
		if humanStep(r.Workflow, id) {
			waiting = append(waiting, id)
		}
	}
	return fmt.Errorf("--answer: %s (human steps: %s)", strings.Join(bad, "; "), dash(strings.Join(waiting, ", ")))
}

// resumeOrReuse resumes a paused run. A queued run that already holds these
// answers was resumed by an earlier command whose publish may have failed;
// it is returned as it is, to be published again under its generation (the
// stream drops the duplicate).
func resumeOrReuse(ctx context.Context, env *cmdEnv, st *store.Store, r *store.Run, answers map[string]map[string]string) (*store.Run, error) {
	resumed, err := st.Resume(ctx, r.ID, answers)
	if err == nil {
		return resumed, nil
	}
	if !errors.Is(err, store.ErrIllegalTransition) {
		return nil, err
	}
	cur, gerr := st.Get(ctx, r.ID)
	if gerr != nil {
		return nil, gerr
	}
	if cur.Status == runnerd.StatusQueued && hasAnswers(cur.Answers, answers) {
		fmt.Fprintf(env.stderr, "run %s already has these answers and is queued: queueing it again (a duplicate message is dropped)\n", r.ID)
		return cur, nil
	}
	what := string(cur.Status)
	if cur.Reason != "" {
		what += " (" + string(cur.Reason) + ")"
	}
	return nil, fmt.Errorf("run %s is %s, not paused: only a paused run can be resumed", r.ID, what)
}

func hasAnswers(have, want map[string]map[string]string) bool {
	for step, kv := range want {
		for k, v := range kv {
			if got, ok := have[step][k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}
