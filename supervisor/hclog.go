package supervisor

import (
	"bytes"
	"encoding/json"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// newHCLogger adapts zerolog for go-plugin: its own lines and the child's
// log lines arrive here as hclog JSON and leave as zerolog events carrying
// the run's fields (run_id, attempt, trace_id, ...) at the same level. The
// level follows l's, so --log-level debug shows go-plugin's debug lines.
func newHCLogger(l zerolog.Logger) hclog.Logger {
	pluginLog, _ := newSwitchableHCLogger(l)
	return pluginLog
}

// newSwitchableHCLogger is newHCLogger whose zerolog logger can be replaced
// later: a child started before its run gets the run's fields when it is
// given one.
func newSwitchableHCLogger(l zerolog.Logger) (hclog.Logger, func(zerolog.Logger)) {
	w := &hclogWriter{}
	w.l.Store(&l)
	pluginLog := hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Level:      hclogLevel(l.GetLevel()),
		JSONFormat: true,
		Output:     w,
	})
	return pluginLog, func(l zerolog.Logger) { w.l.Store(&l) }
}

type hclogWriter struct {
	l atomic.Pointer[zerolog.Logger]
}

func (w *hclogWriter) Write(p []byte) (int, error) {
	l := w.l.Load()
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var entry map[string]any
		if json.Unmarshal(line, &entry) != nil {
			l.Info().Str("line", string(line)).Msg("plugin output")
			continue
		}
		level, _ := entry["@level"].(string)
		msg, _ := entry["@message"].(string)
		lvl := zerologLevel(level)
		if msg == "plugin process exited" {
			// go-plugin reports every child exit, at error level when the
			// child was killed, and the supervisor kills every child once
			// its event stream ends. The supervisor observes and classifies
			// exits itself ("runexec exited without finishing"), so this
			// line is a debug detail, not an error on every run.
			lvl = zerolog.DebugLevel
		}
		ev := l.WithLevel(lvl)
		for k, v := range entry {
			switch k {
			case "@level", "@message", "@timestamp", "@caller", "timestamp":
				// the level and message are the event's own; zerolog stamps
				// its time (the child's differs by microseconds)
			case "@module":
				ev = ev.Interface("module", v)
			default:
				ev = ev.Interface(k, v)
			}
		}
		ev.Msg(msg)
	}
	return len(p), nil
}

func hclogLevel(l zerolog.Level) hclog.Level {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return hclog.Debug // go-plugin's trace lines are per RPC
	case zerolog.WarnLevel:
		return hclog.Warn
	case zerolog.ErrorLevel, zerolog.FatalLevel, zerolog.PanicLevel:
		return hclog.Error
	case zerolog.Disabled:
		return hclog.Off
	}
	return hclog.Info
}

func zerologLevel(l string) zerolog.Level {
	switch l {
	case "trace":
		return zerolog.TraceLevel
	case "debug":
		return zerolog.DebugLevel
	case "warn":
		return zerolog.WarnLevel
	case "error":
		return zerolog.ErrorLevel
	}
	return zerolog.InfoLevel
}
