package compiler

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"
)

// This file translates the per-route policies the way Istio's
// pilot/pkg/networking/core/route does: retries, fault injection, CORS,
// mirroring percentages and consistent-hash policies.

// Names of the HTTP filters and retry extension gitmesh emits.
const (
	faultFilterName      = "envoy.filters.http.fault"
	corsFilterName       = "envoy.filters.http.cors"
	previousHostsName    = "envoy.retry_host_predicates.previous_hosts"
	defaultRetryOn       = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	defaultRetries       = 2
	hostSelectionRetries = 5
)

// defaultRetryPolicy is Istio's default retry policy (mesh config
// defaultHttpRetryPolicy unset): 2 retries on connection failures, refused
// streams, gRPC unavailable/cancelled and 503, preferring other hosts
// (previous_hosts) unless the route hashes (consistent hash).
func defaultRetryPolicy(hashed bool) (*routev3.RetryPolicy, error) {
	p := &routev3.RetryPolicy{
		NumRetries:                    wrapperspb.UInt32(defaultRetries),
		RetryOn:                       defaultRetryOn,
		RetriableStatusCodes:          []uint32{http.StatusServiceUnavailable},
		HostSelectionRetryMaxAttempts: hostSelectionRetries,
	}
	if !hashed {
		pred, err := previousHostsPredicate()
		if err != nil {
			return nil, err
		}
		p.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{pred}
	}
	return p, nil
}

func previousHostsPredicate() (*routev3.RetryPolicy_RetryHostPredicate, error) {
	a, err := marshalAny(&previoushostsv3.PreviousHostsPredicate{})
	if err != nil {
		return nil, fmt.Errorf("building retry policy: %w", err)
	}
	return &routev3.RetryPolicy_RetryHostPredicate{
		Name:       previousHostsName,
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: a},
	}, nil
}

// retryPolicy translates a VirtualService's retries as Istio's
// retry.ConvertPolicy: nil is the default policy; attempts 0 disables
// retries (nil); otherwise the default with attempts, retryOn (numbers
// become retriable status codes), perTryTimeout and
// retryIgnorePreviousHosts set.
func retryPolicy(in *networking.HTTPRetry, hashed bool) (*routev3.RetryPolicy, error) {
	out, err := defaultRetryPolicy(hashed)
	if err != nil || in == nil {
		return out, err
	}
	if in.GetAttempts() <= 0 {
		return nil, nil
	}
	out.NumRetries = wrapperspb.UInt32(uint32(in.GetAttempts()))
	if in.GetRetryOn() != "" {
		out.RetryOn, out.RetriableStatusCodes = parseRetryOn(in.GetRetryOn())
		if len(out.RetriableStatusCodes) > 0 && !strings.Contains(out.RetryOn, "retriable-status-codes") {
			out.RetryOn += ",retriable-status-codes"
		}
	}
	if in.GetPerTryTimeout() != nil {
		out.PerTryTimeout = in.GetPerTryTimeout()
	}
	if v := in.GetRetryIgnorePreviousHosts(); v != nil {
		out.RetryHostPredicate = nil
		if v.GetValue() {
			pred, err := previousHostsPredicate()
			if err != nil {
				return nil, err
			}
			out.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{pred}
		}
	}
	return out, nil
}

// parseRetryOn splits retryOn into Envoy retry conditions and HTTP status
// codes.
func parseRetryOn(s string) (string, []uint32) {
	var on []string
	var codes []uint32
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if n, err := strconv.Atoi(part); err == nil && http.StatusText(n) != "" {
			codes = append(codes, uint32(n))
			continue
		}
		on = append(on, part)
	}
	return strings.Join(on, ","), codes
}

// percentMillion translates an Istio Percent (0-100, fractional) into
// Envoy's FractionalPercent per million, as Istio does.
func percentMillion(p *networking.Percent) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(p.GetValue() * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

// percentHundred is p out of a hundred.
func percentHundred(p uint32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: p, Denominator: typev3.FractionalPercent_HUNDRED}
}

// translateFault translates a fault injection into the fault filter's
// per-route HTTPFault, as Istio's TranslateFault. A delay or abort without
// a percentage applies to no request (Istio's documented default): the
// delay gets 0/100 (Istio's deprecated integer percent), the abort no
// percentage (Envoy's default, 0).
func translateFault(in *networking.HTTPFaultInjection) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if d := in.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		out.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()},
			Percentage:         percentHundred(0),
		}
		if d.GetPercentage() != nil {
			out.Delay.Percentage = percentMillion(d.GetPercentage())
		}
	}
	if a := in.GetAbort(); a != nil {
		out.Abort = &faultv3.FaultAbort{}
		if a.GetPercentage() != nil {
			out.Abort.Percentage = percentMillion(a.GetPercentage())
		}
		switch x := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			out.Abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(x.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			code, _ := grpcCode(x.GrpcStatus)
			out.Abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
		default:
			out.Abort = nil
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

// translateCORS translates a CORS policy into the CORS filter's per-route
// CorsPolicy, as Istio does.
func translateCORS(in *networking.CorsPolicy) *corsv3.CorsPolicy {
	out := &corsv3.CorsPolicy{
		ForwardNotMatchingPreflights: wrapperspb.Bool(in.GetUnmatchedPreflights() != networking.CorsPolicy_IGNORE),
		FilterEnabled:                &corev3.RuntimeFractionalPercent{DefaultValue: percentHundred(100)},
		AllowCredentials:             in.GetAllowCredentials(),
		AllowHeaders:                 strings.Join(in.GetAllowHeaders(), ","),
		AllowMethods:                 strings.Join(in.GetAllowMethods(), ","),
		ExposeHeaders:                strings.Join(in.GetExposeHeaders(), ","),
	}
	for _, o := range in.GetAllowOrigins() {
		if sm := stringMatcher(o); sm != nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
		}
	}
	if in.GetMaxAge() != nil {
		out.MaxAge = strconv.FormatInt(in.GetMaxAge().GetSeconds(), 10)
	}
	return out
}

// hashPolicy translates a consistent-hash load balancer into the route's
// hash policy (nil when lb does not hash).
func hashPolicy(ch *networking.LoadBalancerSettings_ConsistentHashLB) *routev3.RouteAction_HashPolicy {
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: k.HttpHeaderName},
		}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
			Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Ttl: k.HttpCookie.GetTtl(), Path: k.HttpCookie.GetPath()},
		}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: k.UseSourceIp},
		}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName},
		}}
	}
	return nil
}

// consistentHashFor returns the consistent hash that applies to traffic
// for destination d of service s, as Istio's hashForHTTPDestination: the
// subset's port-level, else the subset's, else the port-level (only for an
// explicit destination port), else the top-level setting.
func consistentHashFor(s *service, subsetName string, explicitPort uint32) *networking.LoadBalancerSettings_ConsistentHashLB {
	if s == nil {
		return nil
	}
	portLevel := func(tp *networking.TrafficPolicy) *networking.LoadBalancerSettings_ConsistentHashLB {
		if explicitPort == 0 {
			return nil
		}
		for _, pl := range tp.GetPortLevelSettings() {
			if pl.GetPort().GetNumber() == explicitPort {
				return pl.GetLoadBalancer().GetConsistentHash()
			}
		}
		return nil
	}
	ch := s.policy.GetLoadBalancer().GetConsistentHash()
	pls := portLevel(s.policy)
	var subsetHash, subsetPLS *networking.LoadBalancerSettings_ConsistentHashLB
	for _, ss := range s.subsets {
		if ss.name == subsetName && subsetName != "" {
			subsetHash = ss.policy.GetLoadBalancer().GetConsistentHash()
			subsetPLS = portLevel(ss.policy)
		}
	}
	switch {
	case subsetPLS != nil:
		return subsetPLS
	case subsetHash != nil:
		return subsetHash
	case pls != nil:
		return pls
	}
	return ch
}

// portConsistentHash is the consistent hash of a service port's default
// route (a host without a VirtualService), as Istio's hashForService: the
// port-level setting, else the top-level one.
func portConsistentHash(s *service, port uint32) *networking.LoadBalancerSettings_ConsistentHashLB {
	ch := s.policy.GetLoadBalancer().GetConsistentHash()
	for _, pl := range s.policy.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port {
			if h := pl.GetLoadBalancer().GetConsistentHash(); h != nil {
				ch = h
			}
			break
		}
	}
	return ch
}
