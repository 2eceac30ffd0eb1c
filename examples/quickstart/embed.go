// Package quickstart embeds the quickstart policy that `gitmesh up` seeds
// its demo repository with. The files under policy/ are the example itself:
// run `gitmesh validate examples/quickstart/policy` to check them.
package quickstart

import "embed"

// Policy holds policy/*.yaml.
//
//go:embed policy
var Policy embed.FS
