package client_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/supervisor"
	"github.com/runnerd/runnerd/workflow"
)

// Submit a workflow, wait for its run to finish and read a step's log. The
// example starts its own embedded servers and a runner on them (what
// `runnerd dev` does); a service would Dial the fleet's servers instead.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "client-example-")
	defer os.RemoveAll(dir)
	stack, err := devstack.Start(ctx, devstack.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stack.Close()
	stopRunner := exampleRunner(ctx, stack, dir)
	defer stopRunner()

	s3 := blob.Config{Endpoint: stack.S3Endpoint, Region: stack.S3Region, Bucket: stack.S3Bucket,
		AccessKey: stack.S3AccessKey, SecretKey: stack.S3SecretKey, PathStyle: true}
	c, err := client.Dial(ctx, client.Config{
		NATSURL: stack.NATSURL,
		Mongo:   store.Config{URI: stack.MongoURI},
		S3:      &s3,
		Tenant:  "acme",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	wf, err := workflow.Parse([]byte(`name: hello
vars: {who: world}
steps:
  - id: greet
    run: ["echo", "hello, ${{ vars.who }}"]
`), "hello.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	q, err := c.Submit(ctx, client.Submission{Workflow: wf, Vars: map[string]string{"who": "example"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Wait hears the run's notice on runnerd.finished.<id>; it does not poll.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	run, err := c.Wait(wctx, q.Run.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(run.Status, run.Reason)

	log, err := c.Logs(ctx, run.ID, "greet")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer log.Close()
	lines := bufio.NewScanner(log)
	for lines.Scan() {
		if !strings.HasPrefix(lines.Text(), "[runexec:") { // the attempt markers
			fmt.Println(lines.Text())
		}
	}

	_, err = c.Get(ctx, "no-such-run")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// succeeded completed
	// hello, example
	// true
}

// exampleRunner serves runs on the stack, as runnerd serve would.
func exampleRunner(ctx context.Context, stack *devstack.Stack, dir string) (stop func()) {
	st, err := store.Open(ctx, store.Config{URI: stack.MongoURI})
	if err != nil {
		panic(err)
	}
	nc, js := mustJetStream(stack.NATSURL)
	q, err := queue.Setup(ctx, js, queue.DefaultConfig())
	if err != nil {
		panic(err)
	}
	blobs, err := blob.New(ctx, blob.Config{Endpoint: stack.S3Endpoint, Region: stack.S3Region, Bucket: stack.S3Bucket,
		AccessKey: stack.S3AccessKey, SecretKey: stack.S3SecretKey, PathStyle: true})
	if err != nil {
		panic(err)
	}
	sup, err := supervisor.New(supervisor.Config{
		RunnerID: "example", RunnerIDFallback: true, RunDirRoot: dir + "/runs", RunexecPath: runexecPath,
		Logger: zerolog.Nop(),
	}, q, st, blobs)
	if err != nil {
		panic(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = sup.Run(rctx); close(done) }()
	return func() {
		cancel()
		sup.StopNow()
		<-done
		_ = sup.Close()
		nc.Close()
		_ = st.Close(ctx)
	}
}
