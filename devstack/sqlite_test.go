package devstack_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd/devstack/devstacktest"
)

// After IndexIDLookups, FerretDB's lookup by _id is answered from an index:
// SQLite's plan for the exact query FerretDB sends names it.
func TestIndexIDLookups(t *testing.T) {
	s := devstacktest.Start(t)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(s.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	coll := client.Database("idx").Collection("things")
	for i := range 50 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("doc", i)}, {Key: "n", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.IndexIDLookups(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.IndexIDLookups(ctx); err != nil {
		t.Fatalf("second call: %v", err)
	}
	var got bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "doc7"}}).Decode(&got); err != nil || got["n"] != int32(7) {
		t.Fatalf("find after indexing: %v %v", got, err)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.Dir(), "mongo", "idx.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var table string
	if err := db.QueryRow(`SELECT table_name FROM "_ferretdb_collections" WHERE name = 'things'`).Scan(&table); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(fmt.Sprintf(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table), `"doc7"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); !strings.Contains(p, "_runnerd_id_lookup") {
		t.Fatalf("lookup by _id does not use the index: %s", p)
	}
}
