package devstack

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses
)

// IndexIDLookups gives every FerretDB collection an index FerretDB v1 lacks.
// FerretDB finds a document by _id with `_ferretdb_sjson->'$._id' = ?` but
// indexes `_ferretdb_sjson->"_id"`; SQLite uses an expression index only for
// the same expression, so every lookup, update and delete by _id read the
// whole table: a cost per stored document (docs/benchmarks.md, "Figures behind the code"). The index is invisible to
// FerretDB's own metadata and goes away with its table.
//
// Collections are created by their first use, so call it after the store
// opened (runnerd dev does); calling it again is cheap.
func (s *Stack) IndexIDLookups(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(s.cfg.Dir, "mongo", "*.sqlite"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := indexIDLookups(ctx, f); err != nil {
			return fmt.Errorf("devstack: index _id lookups in %s: %w", filepath.Base(f), err)
		}
	}
	return nil
}

func indexIDLookups(ctx context.Context, file string) error {
	if _, err := os.Stat(file); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT table_name FROM "_ferretdb_collections"`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // no collection yet
		}
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+"_runnerd_id_lookup", t)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("table %s: %w", t, err)
		}
	}
	return nil
}
