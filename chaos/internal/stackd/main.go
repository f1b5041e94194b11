//go:build chaos

// Command stackd runs the devstack servers (NATS + JetStream, FerretDB on
// SQLite, S3) in a process of their own, for the chaos suites: they must
// outlive the runnerd processes the suites kill, and NATS must be restartable
// alone. It prints one JSON line with the URLs on stdout, then:
// it can be started again on the same ports (--nats-port, --mongo-port,
// --s3-port), as after a SIGKILL of the whole stack.
// SIGUSR1 stops NATS, SIGUSR2 starts it again (same port, same data), each
// answered by a line on stdout; SIGTERM or SIGINT stops everything.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/runnerd/runnerd/devstack"
)

func main() {
	dir := flag.String("dir", "", "data directory")
	natsPort := flag.Int("nats-port", 0, "NATS port (0: a free one)")
	mongoPort := flag.Int("mongo-port", 0, "MongoDB-wire port (0: a free one)")
	s3Port := flag.Int("s3-port", 0, "S3 port (0: a free one)")
	flag.Parse()
	s, err := devstack.Start(context.Background(), devstack.Config{Dir: *dir, NATSPort: *natsPort, MongoPort: *mongoPort, S3Port: *s3Port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "stackd:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	_ = json.NewEncoder(os.Stdout).Encode(map[string]string{
		"nats": s.NATSURL, "mongo": s.MongoURI, "s3": s.S3Endpoint, "bucket": s.S3Bucket,
		"region": s.S3Region, "access_key": s.S3AccessKey, "secret_key": s.S3SecretKey,
	})
	for sig := range sigs {
		switch sig {
		case syscall.SIGUSR1:
			s.StopNATS()
			fmt.Println("nats stopped")
		case syscall.SIGUSR2:
			if err := s.StartNATS(); err != nil {
				fmt.Println("nats start failed:", err)
				continue
			}
			fmt.Println("nats started")
		default:
			_ = s.Close()
			return
		}
	}
}
