package child

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Serve serves impl to the runnerd that started this process and returns
// when runnerd closes the connection. Create logger before calling it:
// plugin.Serve swaps os.Stdout and os.Stderr.
func Serve(impl Executor, logger hclog.Logger) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{pluginName: &executorPlugin{impl: impl}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
