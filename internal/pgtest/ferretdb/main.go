// Command ferretdb runs FerretDB v1 on PostgreSQL as a process of its own:
// the MongoDB-wire server `make test-postgres` runs the store and
// end-to-end suites against. It is built without the
// ferretdb_no_postgresql tag (the tag leaves FerretDB's PostgreSQL backend
// out of every other binary).
//
//	ferretdb --postgresql-url postgres://user@host:port/db [--listen 127.0.0.1:0] [--uri-file F]
//
// It prints the MongoDB URI it serves on (and writes it to --uri-file, for
// scripts waiting for it) and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to listen on (port 0: any free port)")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/ferretdb")
	uriFile := flag.String("uri-file", "", "file to write the MongoDB URI to once listening")
	flag.Parse()
	if *pgURL == "" {
		fmt.Fprintln(os.Stderr, "ferretdb: --postgresql-url is required")
		os.Exit(2)
	}
	// FerretDB logs every error reply at WARN (a duplicate key is an
	// expected outcome for runnerd): errors only.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        logger,
		Handler:       "postgresql",
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
	uri := f.MongoDBURI()
	fmt.Println(uri)
	if *uriFile != "" {
		if err := os.WriteFile(*uriFile, []byte(uri+"\n"), 0o600); err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}
