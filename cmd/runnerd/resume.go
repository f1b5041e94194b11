package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
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
0 succeeded, 1 failed, 2 invalid usage, 3 paused, 4 cancelled. A run that is
not paused: exit 6.`,
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
	c, cl, r, err := openRun(ctx, cfg, needMongo|needNATS, "runnerd resume", id)
	if err != nil {
		return err
	}
	defer c.Close()
	from := r.EventSeq // --wait shows what happens from here on
	queued, err := cl.Resume(ctx, id, answers)
	if err != nil {
		return cfg.classify(err)
	}
	if queued.Again {
		fmt.Fprintf(env.stderr, "run %s already has these answers and is queued: queueing it again (a duplicate message is dropped)\n", id)
	}
	fmt.Fprintf(env.stderr, "run %s resumed\n", id)
	if opt.json && !wait {
		return writeRunJSON(env.stdout, client.Shown(queued.Run), nil, nil)
	}
	if !wait {
		return nil
	}
	return waitRun(ctx, env, c, cl, id, from, opt)
}
