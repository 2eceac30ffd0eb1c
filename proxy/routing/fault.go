package routing

import (
	"time"

	"github.com/gitmesh/gitmesh/proxy/upstream"
)

// FaultConfig is a built HTTPFault: an optional fixed delay and an optional
// abort, each applied to a share of requests.
type FaultConfig struct {
	// Delay is the fixed delay, applied to DelayShare of requests.
	Delay       time.Duration
	DelayShare  upstream.Fraction
	AbortStatus int  // HTTP status of an abort; 200 for a gRPC abort
	AbortGRPC   bool // abort with grpc-status instead of an HTTP error
	// GRPCStatus is the grpc-status of a gRPC abort.
	GRPCStatus uint32
	// AbortShare is the share of requests aborted, with AbortBody.
	AbortShare upstream.Fraction
	AbortBody  string
	// HasDelay and HasAbort say which faults are configured;
	// DisableStats is disable_downstream_cluster_stats.
	HasDelay     bool
	HasAbort     bool
	DisableStats bool
}
