package child

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/runnerd/runnerd"
	pb "github.com/runnerd/runnerd/proto/runexec/v1"
	"github.com/runnerd/runnerd/workflow"
)

func requestToPB(r *Request) (*pb.ExecuteRequest, error) {
	wf, err := encodeJSON(r.Workflow, "workflow")
	if err != nil {
		return nil, err
	}
	var state []byte
	if r.State != nil {
		if state, err = encodeJSON(r.State, "step state"); err != nil {
			return nil, err
		}
	}
	out := &pb.ExecuteRequest{
		RunId:         r.RunID,
		WorkflowJson:  wf,
		Vars:          r.Vars,
		StateJson:     state,
		Workdir:       r.Workdir,
		LogDir:        r.LogDir,
		LogLimit:      r.LogLimit,
		KillGraceMs:   r.KillGrace.Milliseconds(),
		LogEventLimit: r.LogEventLimit,
		Env:           r.Env,
		Secrets:       r.Secrets,
	}
	if !r.Deadline.IsZero() {
		out.DeadlineUnixMs = r.Deadline.UnixMilli()
	}
	if len(r.Answers) > 0 {
		out.Answers = make(map[string]*pb.Answers, len(r.Answers))
		for step, a := range r.Answers {
			out.Answers[step] = &pb.Answers{Values: a}
		}
	}
	return out, nil
}

func requestFromPB(p *pb.ExecuteRequest) (*Request, error) {
	var wf workflow.Workflow
	if err := json.Unmarshal(p.GetWorkflowJson(), &wf); err != nil {
		return nil, fmt.Errorf("decode workflow of run %s: %w", p.GetRunId(), err)
	}
	r := &Request{
		RunID:     p.GetRunId(),
		Workflow:  &wf,
		Vars:      p.GetVars(),
		Workdir:   p.GetWorkdir(),
		LogDir:    p.GetLogDir(),
		LogLimit:  p.GetLogLimit(),
		KillGrace: time.Duration(p.GetKillGraceMs()) * time.Millisecond,

		LogEventLimit: p.GetLogEventLimit(),
		Env:           p.GetEnv(),
		Secrets:       p.GetSecrets(),
	}
	if len(p.GetStateJson()) > 0 {
		if err := json.Unmarshal(p.GetStateJson(), &r.State); err != nil {
			return nil, fmt.Errorf("decode step state of run %s: %w", p.GetRunId(), err)
		}
	}
	if ms := p.GetDeadlineUnixMs(); ms > 0 {
		r.Deadline = time.UnixMilli(ms)
	}
	if len(p.GetAnswers()) > 0 {
		r.Answers = make(map[string]map[string]string, len(p.GetAnswers()))
		for step, a := range p.GetAnswers() {
			r.Answers[step] = a.GetValues()
		}
	}
	return r, nil
}

func eventToPB(e *runnerd.Event) *pb.Event {
	return &pb.Event{
		Type:         string(e.Type),
		TimeUnixNano: e.Time.UnixNano(),
		Step:         e.Step,
		Attempt:      int32(e.Attempt),
		Stream:       e.Stream,
		Text:         []byte(e.Text),
		Key:          e.Key,
		Value:        e.Value,
		Path:         e.Path,
		Status:       e.Status,
		Reason:       e.Reason,
		ExitCode:     int32(e.ExitCode),
		Signal:       e.Signal,
		DurationMs:   e.DurationMS,
		Message:      e.Message,
		Prompt:       e.Prompt,
	}
}

func eventFromPB(p *pb.Event) runnerd.Event {
	return runnerd.Event{
		Type:       runnerd.EventType(p.GetType()),
		Time:       time.Unix(0, p.GetTimeUnixNano()).UTC(),
		Step:       p.GetStep(),
		Attempt:    int(p.GetAttempt()),
		Stream:     p.GetStream(),
		Text:       string(p.GetText()),
		Key:        p.GetKey(),
		Value:      p.GetValue(),
		Path:       p.GetPath(),
		Status:     p.GetStatus(),
		Reason:     p.GetReason(),
		ExitCode:   int(p.GetExitCode()),
		Signal:     p.GetSignal(),
		DurationMS: p.GetDurationMs(),
		Message:    p.GetMessage(),
		Prompt:     p.GetPrompt(),
	}
}
