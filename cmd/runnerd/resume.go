package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnerd/runnerd/client"
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

	cl, err := c.client()
	if err != nil {
		return fail(env, "resume", cfg, err)
	}
	r, err := getRun(ctx, cl, id)
	if err != nil {
		return fail(env, "resume", cfg, err)
	}
	from := r.EventSeq // --wait shows what happens from here on
	queued, err := cl.Resume(ctx, id, answers)
	if errors.Is(err, client.ErrInvalid) {
		fmt.Fprintf(env.stderr, "resume: %v\n", err)
		return exitUsage
	}
	if err != nil {
		return fail(env, "resume", cfg, err)
	}
	if queued.Again {
		fmt.Fprintf(env.stderr, "run %s already has these answers and is queued: queueing it again (a duplicate message is dropped)\n", id)
	}
	fmt.Fprintf(env.stdout, "run %s resumed\n", id)
	if !wait {
		return exitOK
	}
	return waitRun(ctx, env, cl, id, from, asJSON)
}
