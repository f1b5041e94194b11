// Package queue is runnerd's contract with NATS JetStream: the run stream
// and its shared durable consumer, the versioned run message, the cancel
// subject and the run leases (a KV bucket whose revisions are the runs'
// fencing epochs).
//
// It holds no policy: which delivery is acked, naked or termed is the
// supervisor's exit table. This package makes each of those actions one
// clear call, and keeps these decisions in one place:
//
//   - Redelivery delays are not the consumer's BackOff, which would replace
//     AckWait with the backoff steps and then need InProgress faster than
//     the shortest one. The consumer has one AckWait (how long a silently
//     dead runner holds a run); the supervisor Naks with
//     Delivery.NakWithBackoff, whose delay comes from Config.Backoff.
//   - Every runnerd process shares the durable consumer, so MaxAckPending is
//     fleet-wide; a process limits itself by passing its free slots to Fetch.
//   - Fetch returns as soon as something is there; it never holds a run back
//     to fill a batch, since AckWait runs from delivery.
//   - Nats-Msg-Id is "<run_id>-<generation>": a republished run needs the next
//     generation, and a repeat within the duplicate window is ErrDuplicate.
//   - Run and tenant ids are 1-128 of [A-Za-z0-9_-], starting with a letter
//     or digit: one NATS subject token, one KV key, one path segment. Dots
//     are refused, since they split subjects and spell "." and "..".
//   - A workflow_ref can only be workflows/<sha256>.json (see WorkflowRef):
//     the runner reads it with its own credentials.
//   - A lease's epoch is the KV revision its Create wrote. Revisions are the
//     bucket stream's sequence numbers, so each acquisition of a run gets a
//     greater epoch than every earlier one. Renew writes the same value
//     with the last revision (a bucket TTL restarts on every write; a
//     per-key TTL would not survive an Update).
package queue
