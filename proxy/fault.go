package proxy

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// faultFilterName is the HTTP filter (and typed_per_filter_config key) of
// Envoy's fault injection filter.
const faultFilterName = "envoy.filters.http.fault"

// fraction is a probability in parts per million.
type fraction uint32

const million = 1_000_000

// buildFraction converts a FractionalPercent; nil is 0%, as Envoy reads an
// unset percentage.
func buildFraction(p *typev3.FractionalPercent) (fraction, error) {
	if p == nil {
		return 0, nil
	}
	var scale uint64
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		scale = 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		scale = 100
	case typev3.FractionalPercent_MILLION:
		scale = 1
	default:
		return 0, fmt.Errorf("denominator %s: %w", p.GetDenominator(), errUnsupported)
	}
	return fraction(min(uint64(p.GetNumerator())*scale, million)), nil
}

// roll reports whether an event with probability f happens.
func (f fraction) roll() bool {
	switch {
	case f == 0:
		return false
	case f >= million:
		return true
	}
	return rand.Uint32N(million) < uint32(f)
}

// faultConfig is a built HTTPFault: an optional fixed delay and an optional
// abort, each applied to a share of requests.
type faultConfig struct {
	delay        time.Duration
	delayShare   fraction
	abortStatus  int  // HTTP status of an abort; 200 for a gRPC abort
	abortGRPC    bool // abort with grpc-status instead of an HTTP error
	grpcStatus   uint32
	abortShare   fraction
	abortBody    string
	hasDelay     bool
	hasAbort     bool
	disableStats bool
}

// buildFault decodes an HTTPFault from a filter's typed_config or a
// typed_per_filter_config entry.
func buildFault(a *anypb.Any) (*faultConfig, *fieldError) {
	f := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(f); err != nil {
		return nil, fieldErr("", "decoding HTTPFault: %w", err)
	}
	if err := checkFields(f, "delay", "abort", "disable_downstream_cluster_stats"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	fc := &faultConfig{abortBody: "fault filter abort", disableStats: f.GetDisableDownstreamClusterStats()}
	if d := f.GetDelay(); d != nil {
		if err := checkFields(d, "fixed_delay", "percentage"); err != nil {
			return nil, fieldErr(".delay", "%w", err)
		}
		if d.GetFixedDelay() == nil {
			return nil, fieldErr(".delay.fixed_delay", "missing")
		}
		share, err := buildFraction(d.GetPercentage())
		if err != nil {
			return nil, fieldErr(".delay.percentage", "%w", err)
		}
		fc.hasDelay, fc.delay, fc.delayShare = true, d.GetFixedDelay().AsDuration(), share
	}
	if ab := f.GetAbort(); ab != nil {
		if err := checkFields(ab, "http_status", "grpc_status", "percentage", "response_body"); err != nil {
			return nil, fieldErr(".abort", "%w", err)
		}
		share, err := buildFraction(ab.GetPercentage())
		if err != nil {
			return nil, fieldErr(".abort.percentage", "%w", err)
		}
		fc.hasAbort, fc.abortShare = true, share
		switch e := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus > 599 {
				return nil, fieldErr(".abort.http_status", "%d: must be 200-599", e.HttpStatus)
			}
			fc.abortStatus = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			fc.abortStatus, fc.abortGRPC, fc.grpcStatus = http.StatusOK, true, e.GrpcStatus
		default:
			return nil, fieldErr(".abort.error_type", "missing http_status or grpc_status")
		}
		if b := ab.GetResponseBody(); b != "" {
			fc.abortBody = b
		}
	}
	return fc, nil
}

// injectFault applies the fault to one request: it sleeps for a delay (flag DI)
// and answers an abort itself (flag FI). It reports whether the request
// was answered (aborted, or the client went away during the delay).
func injectFault(fc *faultConfig, w http.ResponseWriter, r *http.Request, rs *requestState) bool {
	if fc.hasDelay && fc.delayShare.roll() {
		rs.flags |= flagDelayInjected
		t := time.NewTimer(fc.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			rs.code, rs.flags = 0, rs.flags|flagDownstreamClosed
			return true
		}
	}
	if fc.hasAbort && fc.abortShare.roll() {
		rs.flags |= flagFaultInjected
		rs.code = fc.abortStatus
		h := w.Header()
		if fc.abortGRPC {
			h.Set("Content-Type", "application/grpc")
			h.Set("Grpc-Status", strconv.FormatUint(uint64(fc.grpcStatus), 10))
			h.Set("Grpc-Message", fc.abortBody)
			w.WriteHeader(http.StatusOK)
			return true
		}
		h.Set("Content-Type", "text/plain")
		w.WriteHeader(fc.abortStatus)
		io.WriteString(w, fc.abortBody)
		return true
	}
	return false
}
