package queue

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd/workflow"
)

const goodWorkflow = `{"name":"hello","steps":[{"id":"a","run":["echo","hi"]}]}`

// msgJSON builds a message body from a good one, with fields replaced
// (a nil value deletes the field).
func msgJSON(t testing.TB, replace map[string]any) []byte {
	t.Helper()
	fields := map[string]any{
		"v":            1,
		"run_id":       "run-01",
		"tenant_id":    "acme",
		"workflow":     json.RawMessage(goodWorkflow),
		"vars":         map[string]string{"who": "world"},
		"timeout_sec":  60,
		"published_at": "2026-01-02T03:04:05Z",
	}
	for k, v := range replace {
		if v == nil {
			delete(fields, k)
			continue
		}
		fields[k] = v
	}
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecode(t *testing.T) {
	t.Parallel()
	ref := WorkflowRef([]byte(goodWorkflow))
	cases := []struct {
		name  string
		data  []byte
		want  error  // nil: decodes
		field string // the FieldError's field, if one is expected
	}{
		{name: "good inline workflow", data: msgJSON(t, nil)},
		{name: "good workflow ref", data: msgJSON(t, map[string]any{"workflow": nil, "workflow_ref": ref})},
		{name: "good resume", data: msgJSON(t, map[string]any{"resume": map[string]any{"answers": map[string]any{"approve": map[string]string{"ok": "yes"}}}})},
		{name: "good minimal", data: []byte(`{"v":1,"run_id":"r","tenant_id":"t","workflow_ref":"` + ref + `","published_at":"2026-01-02T03:04:05Z"}`)},

		{name: "unknown v", data: msgJSON(t, map[string]any{"v": 2}), want: ErrUnknownVersion},
		{name: "unknown v with new fields", data: msgJSON(t, map[string]any{"v": 2, "priority": 5}), want: ErrUnknownVersion},
		{name: "v zero", data: msgJSON(t, map[string]any{"v": 0}), want: ErrUnknownVersion},
		{name: "missing v", data: msgJSON(t, map[string]any{"v": nil}), want: ErrInvalidMessage, field: "v"},
		{name: "v not a number", data: msgJSON(t, map[string]any{"v": "1"}), want: ErrInvalidMessage, field: "v"},
		{name: "v fraction", data: msgJSON(t, map[string]any{"v": 1.5}), want: ErrInvalidMessage, field: "v"},

		{name: "unknown field", data: msgJSON(t, map[string]any{"priority": 5}), want: ErrInvalidMessage, field: "priority"},
		{name: "field in other case", data: msgJSON(t, map[string]any{"RUN_ID": "x"}), want: ErrInvalidMessage, field: "RUN_ID"},
		{name: "field twice", data: []byte(`{"v":1,"run_id":"a","run_id":"b","tenant_id":"t","workflow_ref":"` + ref + `","published_at":"2026-01-02T03:04:05Z"}`), want: ErrInvalidMessage, field: "run_id"},

		{name: "missing run_id", data: msgJSON(t, map[string]any{"run_id": nil}), want: ErrInvalidMessage, field: "run_id"},
		{name: "null run_id", data: []byte(strings.Replace(string(msgJSON(t, nil)), `"run_id":"run-01"`, `"run_id":null`, 1)), want: ErrInvalidMessage, field: "run_id"},
		{name: "run_id not a string", data: msgJSON(t, map[string]any{"run_id": 7}), want: ErrInvalidMessage, field: "run_id"},
		{name: "missing tenant_id", data: msgJSON(t, map[string]any{"tenant_id": nil}), want: ErrInvalidMessage, field: "tenant_id"},
		{name: "bad tenant_id", data: msgJSON(t, map[string]any{"tenant_id": "a/b"}), want: ErrInvalidMessage, field: "tenant_id"},
		{name: "neither workflow nor ref", data: msgJSON(t, map[string]any{"workflow": nil}), want: ErrInvalidMessage, field: "workflow"},
		{name: "both workflow and ref", data: msgJSON(t, map[string]any{"workflow_ref": ref}), want: ErrInvalidMessage, field: "workflow"},
		{name: "free-form workflow ref", data: msgJSON(t, map[string]any{"workflow": nil, "workflow_ref": "runs/other/artifacts/x.json"}), want: ErrInvalidMessage, field: "workflow_ref"},
		{name: "missing published_at", data: msgJSON(t, map[string]any{"published_at": nil}), want: ErrInvalidMessage, field: "published_at"},
		{name: "bad published_at", data: msgJSON(t, map[string]any{"published_at": "yesterday"}), want: ErrInvalidMessage, field: "published_at"},
		{name: "negative timeout", data: msgJSON(t, map[string]any{"timeout_sec": -1}), want: ErrInvalidMessage, field: "timeout_sec"},
		{name: "vars wrong type", data: msgJSON(t, map[string]any{"vars": map[string]int{"n": 1}}), want: ErrInvalidMessage, field: "vars"},
		{name: "empty var name", data: msgJSON(t, map[string]any{"vars": map[string]string{"": "x"}}), want: ErrInvalidMessage, field: "vars"},
		{name: "resume without answers", data: msgJSON(t, map[string]any{"resume": map[string]any{}}), want: ErrInvalidMessage, field: "resume.answers"},
		{name: "resume unknown field", data: msgJSON(t, map[string]any{"resume": map[string]any{"answers": map[string]any{"s": map[string]string{"k": "v"}}, "by": "me"}}), want: ErrInvalidMessage, field: "resume"},

		{name: "workflow unknown field", data: msgJSON(t, map[string]any{"workflow": json.RawMessage(`{"steps":[{"id":"a","run":["x"],"retry":3}]}`)}), want: workflow.ErrInvalid, field: "workflow"},
		{name: "workflow field in other case", data: msgJSON(t, map[string]any{"workflow": json.RawMessage(`{"Steps":[{"id":"a","run":["x"]}]}`)}), want: workflow.ErrInvalid, field: "workflow"},
		{name: "workflow wrong type", data: msgJSON(t, map[string]any{"workflow": json.RawMessage(`{"steps":"a"}`)}), want: workflow.ErrInvalid, field: "workflow"},
		{name: "workflow bad duration", data: msgJSON(t, map[string]any{"workflow": json.RawMessage(`{"timeout":"soon","steps":[{"id":"a","run":["x"]}]}`)}), want: workflow.ErrInvalid, field: "workflow"},

		{name: "workflow needs unknown step", data: msgJSON(t, map[string]any{"workflow": json.RawMessage(`{"steps":[{"id":"a","run":["x"],"needs":["b"]}]}`)}), want: workflow.ErrInvalid, field: "workflow"},
		{name: "workflow duplicate ids", data: msgJSON(t, map[string]any{"workflow": json.RawMessage(`{"steps":[{"id":"a","run":["x"]},{"id":"a","run":["y"]}]}`)}), want: workflow.ErrInvalid, field: "workflow"},
		{name: "workflow without steps", data: msgJSON(t, map[string]any{"workflow": json.RawMessage(`{"name":"x"}`)}), want: workflow.ErrInvalid, field: "workflow"},
		{name: "workflow not an object", data: msgJSON(t, map[string]any{"workflow": "steps: []"}), want: ErrInvalidMessage, field: "workflow"},
		{name: "workflow null", data: []byte(strings.Replace(string(msgJSON(t, nil)), goodWorkflow, "null", 1)), want: ErrInvalidMessage, field: "workflow"},

		{name: "not JSON", data: []byte(`v=1`), want: ErrInvalidMessage},
		{name: "empty", data: nil, want: ErrInvalidMessage},
		{name: "array", data: []byte(`[1]`), want: ErrInvalidMessage},
		{name: "truncated", data: msgJSON(t, nil)[:40], want: ErrInvalidMessage},
		{name: "data after object", data: append(msgJSON(t, nil), []byte(` {}`)...), want: ErrInvalidMessage},
	}
	for _, id := range []string{"", "../x", "..", ".", "a.b", "-x", "_x", "a/b", "a b", "ü", "a\x00", "a*", "a>", strings.Repeat("x", 129)} {
		cases = append(cases, struct {
			name  string
			data  []byte
			want  error
			field string
		}{name: "bad run id " + id, data: msgJSON(t, map[string]any{"run_id": id}), want: ErrInvalidMessage, field: "run_id"})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.data)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if m.V != Version || m.RunID == "" || m.TenantID == "" || m.PublishedAt.IsZero() {
					t.Fatalf("Decode = %+v, fields missing", m)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode error = %v, want %v", err, tc.want)
			}
			if tc.want != ErrUnknownVersion && !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("Decode error = %v, want it to match ErrInvalidMessage too", err)
			}
			if tc.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Fatalf("Decode error = %v, want it to name field %q", err, tc.field)
				}
				if !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("error text %q does not name %q", err, tc.field)
				}
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	t.Parallel()
	m, err := Decode(msgJSON(t, map[string]any{"resume": map[string]any{"answers": map[string]any{"approve": map[string]string{"ok": "yes"}}}}))
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{
		V: 1, RunID: "run-01", TenantID: "acme",
		Workflow:    &workflow.Workflow{Name: "hello", Steps: []workflow.Step{{ID: "a", Run: []string{"echo", "hi"}}}},
		Vars:        map[string]string{"who": "world"},
		TimeoutSec:  60,
		Resume:      &Resume{Answers: map[string]map[string]string{"approve": {"ok": "yes"}}},
		PublishedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	got, _ := json.Marshal(m)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("Decode =\n%s\nwant\n%s", got, exp)
	}
}

func TestValidateRunID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "0", "run-01", "01HZX3K9Q8B7_abc-DEF", "550e8400-e29b-41d4-a716-446655440000", strings.Repeat("x", 128)} {
		if err := ValidateRunID(id); err != nil {
			t.Errorf("ValidateRunID(%q) = %v, want nil", id, err)
		}
	}
}

func TestWorkflowRef(t *testing.T) {
	t.Parallel()
	ref := WorkflowRef([]byte("{}"))
	if ref != "workflows/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a.json" {
		t.Fatalf("WorkflowRef = %s", ref)
	}
	if !workflowRefPattern.MatchString(ref) {
		t.Fatalf("WorkflowRef %s does not pass Decode's check", ref)
	}
}

func TestRunIDFromMsgID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]string{
		"run-01-0":  "run-01",
		"abc-12":    "abc",
		"abc":       "",
		"abc-":      "",
		"-3":        "",
		"a.b-1":     "",
		"abc-1x":    "",
		"":          "",
		"x-y-z-007": "x-y-z",
	} {
		if got := runIDFromMsgID(id); got != want {
			t.Errorf("runIDFromMsgID(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	c := Config{Backoff: []time.Duration{time.Second, 5 * time.Second}}
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 5 * time.Second, 3: 5 * time.Second, 99: 5 * time.Second} {
		if got := c.RetryDelay(n); got != want {
			t.Errorf("RetryDelay(%d) = %s, want %s", n, got, want)
		}
	}
	if got := (Config{}).RetryDelay(3); got != 0 {
		t.Errorf("RetryDelay without backoff = %s, want 0", got)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	long := DefaultConfig()
	long.Stream = strings.Repeat("s", 64)
	if err := long.Validate(); err != nil {
		t.Fatalf("a stream name of 64 bytes: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"stream with dot":      func(c *Config) { c.Stream = "a.b" },
		"wildcard subject":     func(c *Config) { c.Subject = "runnerd.*" },
		"empty consumer":       func(c *Config) { c.Consumer = "" },
		"cancel under subject": func(c *Config) { c.CancelPrefix = "runnerd.runs" },
		"bucket with dot":      func(c *Config) { c.LeaseBucket = "a.b" },
		"stream of 65 bytes":   func(c *Config) { c.Stream = strings.Repeat("s", 65) },
		"short lease TTL":      func(c *Config) { c.LeaseTTL = 100 * time.Millisecond },
		"no ack wait":          func(c *Config) { c.AckWait = 0 },
		"no deliveries":        func(c *Config) { c.MaxDeliver = 0 },
		"zero backoff":         func(c *Config) { c.Backoff = []time.Duration{time.Second, 0} },
		"no ack pending":       func(c *Config) { c.MaxAckPending = 0 },
		"no duplicate window":  func(c *Config) { c.DuplicateWindow = 0 },
		"no replicas":          func(c *Config) { c.Replicas = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
}

// FuzzDecode: Decode never panics, refuses only with its two sentinel
// errors, and what it accepts survives a round trip unchanged.
func FuzzDecode(f *testing.F) {
	ref := WorkflowRef([]byte(goodWorkflow))
	for _, s := range []string{
		string(msgJSON(f, nil)),
		string(msgJSON(f, map[string]any{"workflow": nil, "workflow_ref": ref})),
		string(msgJSON(f, map[string]any{"resume": map[string]any{"answers": map[string]any{"approve": map[string]string{"ok": "yes"}}}})),
		string(msgJSON(f, map[string]any{"v": 2, "x": 1})),
		string(msgJSON(f, map[string]any{"workflow": json.RawMessage(`{"timeout":1.5,"steps":[{"id":"a","shell":"true","needs":["b"],"timeout":"1m"}]}`)})),
		`{"v":1,"run_id":"a","run_id":"b"}`,
		`{"v":1e400}`,
		`{"v":1,"run_id":"\u00fc"}`,
		`[]`, `null`, `{`, `{"v":1}{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("Decode error %v is neither ErrInvalidMessage nor ErrUnknownVersion", err)
			}
			return
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("encode a decoded message: %v", err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("decode(encode(m)) = %v\nencoded: %s", err, enc)
		}
		enc2, _ := json.Marshal(m2)
		if string(enc) != string(enc2) {
			t.Fatalf("round trip changed the message:\n%s\n%s", enc, enc2)
		}
	})
}
