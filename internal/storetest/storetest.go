// Package storetest opens a store for a test on the server the environment
// names: RUNNERD_TEST_MONGO_URI (a MongoDB-wire server of its own process,
// e.g. FerretDB on PostgreSQL; each test gets a database of its own,
// dropped at the end) or else the URI the test passes (its devstack), with
// the write path RUNNERD_TEST_WRITE_PATH names (auto when unset).
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd/store"
)

// URI is RUNNERD_TEST_MONGO_URI, or fallback when it is unset.
func URI(fallback string) string {
	if uri := os.Getenv("RUNNERD_TEST_MONGO_URI"); uri != "" {
		return uri
	}
	return fallback
}

// Config is the store.Config of a test: on URI(fallback), in a database of
// its own when the server is external, with the write path of
// RUNNERD_TEST_WRITE_PATH.
func Config(t testing.TB, fallback string) store.Config {
	t.Helper()
	path, err := store.ParseWritePath(os.Getenv("RUNNERD_TEST_WRITE_PATH"))
	if err != nil {
		t.Fatalf("RUNNERD_TEST_WRITE_PATH: %v", err)
	}
	cfg := store.Config{URI: URI(fallback), WritePath: path}
	if cfg.URI != fallback {
		cfg.Database = database(t)
		t.Cleanup(func() { drop(cfg.URI, cfg.Database) })
	}
	return cfg
}

// Open opens the store of Config(t, fallback) and closes it when t ends.
func Open(t testing.TB, fallback string) *store.Store {
	t.Helper()
	return OpenConfig(t, Config(t, fallback))
}

// OpenConfig opens a store and closes it when t ends.
func OpenConfig(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open store on %s: %v", cfg.URI, err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// database is a name of at most 60 characters from the test's name and a
// random suffix.
func database(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := "t_" + regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_") + "_" + hex.EncodeToString(b[:])
	if len(db) > 60 {
		db = db[len(db)-60:]
	}
	return db
}

func drop(uri, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return
	}
	defer c.Disconnect(ctx)
	_ = c.Database(db).Drop(ctx)
}
