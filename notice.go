package runnerd

import "time"

// Notice says that a run reached a status it stays in until someone acts:
// terminal (succeeded, failed, cancelled) or paused. It is published as JSON
// on runnerd.finished.<run_id> after the store write it announces, and its
// times are the ones that write stored.
type Notice struct {
	RunID  string `json:"id"`
	Tenant string `json:"tenant"`
	// TenantID is Tenant again, under the name of the run document's
	// field (tenant_id), for consumers written against it.
	TenantID   string    `json:"tenant_id,omitempty"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	Attempt    int       `json:"attempt"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`  // the latest attempt's start
	FinishedAt time.Time `json:"finished_at,omitzero"` // terminal only
	PausedAt   time.Time `json:"paused_at,omitzero"`   // paused only: when it paused
	At         time.Time `json:"at"`                   // when the notice was sent
}
