package metrics

import "strings"

// ResponseFlags is a set of Envoy response flags, as reported in the
// response_flags label of Istio's metrics. The bit order is Envoy's output
// order, so String joins them as Envoy does ("UF,URX").
type ResponseFlags uint32

// Response flags, as Envoy and Istio name them.
const (
	FlagNoHealthyUpstream  ResponseFlags = 1 << iota // UH
	FlagUpstreamTimeout                              // UT
	FlagUpstreamConnFail                             // UF
	FlagUpstreamReset                                // UC
	FlagUpstreamOverflow                             // UO
	FlagNoRoute                                      // NR
	FlagDelayInjected                                // DI
	FlagFaultInjected                                // FI
	FlagDownstreamClosed                             // DC
	FlagRetryLimitExceeded                           // URX
	FlagNoClusterFound                               // NC
	FlagRBACDenied                                   // RBAC
	numResponseFlags       = iota
)

var responseFlagNames = [numResponseFlags]string{"UH", "UT", "UF", "UC", "UO", "NR", "DI", "FI", "DC", "URX", "NC", "RBAC"}

// String returns the flags as Envoy prints them: "-" for none, else the
// short names joined by ",". A single flag does not allocate.
func (f ResponseFlags) String() string {
	if f == 0 {
		return "-"
	}
	var names []string
	for i := range numResponseFlags {
		if f&(1<<i) != 0 {
			if f == 1<<i {
				return responseFlagNames[i]
			}
			names = append(names, responseFlagNames[i])
		}
	}
	return strings.Join(names, ",")
}
