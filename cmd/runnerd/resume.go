package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

func resumeCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg        clientConfig
		answerList []string
		wait       bool
		opt        waitOptions
	)
	c := &cobra.Command{
		Use:   "resume ID --answer step.key=value... [--wait [--logs]] [--json]",
		Short: "answer a paused run's human steps and queue it again",
		Long: `Answers a paused run's human steps and queues it again. Repeating a resume
whose message was not published (the command failed half-way) queues it again
safely. With --wait, follows the run and exits like submit --wait:
0 succeeded, 1 failed, 2 invalid usage, 3 paused, 4 cancelled.`,
		Args: cli.ExactArgs(1, "run id"),
		RunE: func(c *cobra.Command, args []string) error {
			return resume(c.Context(), env, cfg, args[0], answerList, wait, opt)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.List(&answerList, "answer", "answer of a human step: step.key=value (repeatable)")
	f.Bool(&wait, "wait", false, "follow the run until it finishes or pauses again; exit with its status").NoEnv()
	opt.register(f, "the run document")
	return c
}

func resume(ctx context.Context, env *cmdEnv, cfg clientConfig, id string, answerList []string, wait bool, opt waitOptions) error {
	answers, err := cli.ParseAnswers(answerList)
	if err != nil {
		return err
	}
	if len(answers) == 0 {
		return cli.Usagef("want at least one --answer step.key=value")
	}
	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd resume")
	if err != nil {
		return cfg.classify(err)
	}
	defer c.Close()

	r, err := getRun(ctx, c.st, id)
	if err != nil {
		return cfg.classify(err)
	}
	if err := checkAnswers(r, answers); err != nil {
		return cli.Usage(err)
	}
	from := r.EventSeq // --wait shows what happens from here on
	r, err = resumeOrReuse(ctx, env, c.st, r, answers)
	if err != nil {
		return cfg.classify(err)
	}
	if _, err := publishRun(ctx, c, r, &queue.Resume{Answers: r.Answers}); err != nil {
		return cfg.classify(fmt.Errorf("%w\nrun %s was resumed but is not queued yet: repeat the command to queue it", err, id))
	}
	fmt.Fprintf(env.stderr, "run %s resumed\n", id)
	if opt.json && !wait {
		return writeRunJSON(env.stdout, withPendingSteps(r))
	}
	if !wait {
		return nil
	}
	return waitRun(ctx, env, c, id, from, opt)
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
		for k := range kv {
			if strings.ContainsAny(k, ".$") {
				bad = append(bad, fmt.Sprintf("answer key %q of step %q: no '.' or '$'", k, step))
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
	return nil, fmt.Errorf("run %s is %s, not paused: only a paused run can be resumed: %w", r.ID, what, store.ErrIllegalTransition)
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
