package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/runnerd/runnerd/blob"
)

// Logs returns the stored log of a step's latest attempt (from S3): the
// whole log once the step finished or its attempt ended. A step with no
// stored log yet, or a log missing from S3, is ErrNotFound. While a run is
// running, its live output is in its events (Watch, EventLog).
func (c *Client) Logs(ctx context.Context, id, step string) (io.ReadCloser, error) {
	r, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	st := r.Steps[step]
	if st == nil || st.LogKey == "" {
		if r.Workflow == nil || r.Workflow.Step(step) == nil {
			if st == nil {
				return nil, fmt.Errorf("run %s has no step %q: %w", id, step, ErrNotFound)
			}
		}
		return nil, fmt.Errorf("step %s of run %s has no log yet: %w", step, id, ErrNotFound)
	}
	blobs, err := c.blobs(ctx, "logs of run "+id)
	if err != nil {
		return nil, err
	}
	return OpenLog(ctx, blobs, st.LogKey)
}

// OpenLog opens a stored log by its key.
func OpenLog(ctx context.Context, blobs *blob.Store, key string) (io.ReadCloser, error) {
	rc, err := blobs.Get(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("log %s is missing from S3: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("read log %s: %w", key, err))
	}
	return rc, nil
}
