package main

import (
	"github.com/spf13/cobra"

	"github.com/gitmesh/gitmesh/internal/proxycmd"
)

// newProxyCmd is `gitmesh proxy`: the same command as the slim sidecar
// binary gitmesh-proxy (package proxycmd), under the global log flags.
func newProxyCmd(g *globalFlags) *cobra.Command {
	return proxycmd.New(proxycmd.Options{Use: "proxy", Logger: g.logger, DefaultXDSAddr: defaultXDSAddr})
}
