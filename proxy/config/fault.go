package config

import (
	"fmt"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/types/known/anypb"
	"net/http"
)

// FaultFilterName is the HTTP filter (and typed_per_filter_config key) of
// Envoy's fault injection filter.
const FaultFilterName = "envoy.filters.http.fault"

// buildFraction converts a FractionalPercent; nil is 0%, as Envoy reads an
// unset percentage.
func buildFraction(p *typev3.FractionalPercent) (upstream.Fraction, error) {
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
		return 0, fmt.Errorf("denominator %s: %w", p.GetDenominator(), ErrUnsupported)
	}
	return upstream.Fraction(min(uint64(p.GetNumerator())*scale, upstream.Million)), nil
}

// buildFault decodes an HTTPFault from a filter's typed_config or a
// typed_per_filter_config entry.
func buildFault(a *anypb.Any) (*routing.FaultConfig, *fieldError) {
	f := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(f); err != nil {
		return nil, fieldErr("", "decoding HTTPFault: %w", err)
	}
	if err := checkFields(f, "delay", "abort", "disable_downstream_cluster_stats"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	fc := &routing.FaultConfig{AbortBody: "fault filter abort", DisableStats: f.GetDisableDownstreamClusterStats()}
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
		fc.HasDelay, fc.Delay, fc.DelayShare = true, d.GetFixedDelay().AsDuration(), share
	}
	if ab := f.GetAbort(); ab != nil {
		if err := checkFields(ab, "http_status", "grpc_status", "percentage", "response_body"); err != nil {
			return nil, fieldErr(".abort", "%w", err)
		}
		share, err := buildFraction(ab.GetPercentage())
		if err != nil {
			return nil, fieldErr(".abort.percentage", "%w", err)
		}
		fc.HasAbort, fc.AbortShare = true, share
		switch e := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus > 599 {
				return nil, fieldErr(".abort.http_status", "%d: must be 200-599", e.HttpStatus)
			}
			fc.AbortStatus = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			fc.AbortStatus, fc.AbortGRPC, fc.GRPCStatus = http.StatusOK, true, e.GrpcStatus
		default:
			return nil, fieldErr(".abort.error_type", "missing http_status or grpc_status")
		}
		if b := ab.GetResponseBody(); b != "" {
			fc.AbortBody = b
		}
	}
	return fc, nil
}
