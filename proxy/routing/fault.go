package routing

import (
	"time"

	"github.com/gitmesh/gitmesh/proxy/upstream"
)

// FaultConfig is a built HTTPFault: an optional fixed delay and an optional
// abort, each applied to a share of requests.
type FaultConfig struct {
	Delay        time.Duration
	DelayShare   upstream.Fraction
	AbortStatus  int  // HTTP status of an abort; 200 for a gRPC abort
	AbortGRPC    bool // abort with grpc-status instead of an HTTP error
	GRPCStatus   uint32
	AbortShare   upstream.Fraction
	AbortBody    string
	HasDelay     bool
	HasAbort     bool
	DisableStats bool
}
