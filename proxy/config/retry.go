package config

import (
	"fmt"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"strings"
	"time"
)

var retryOnNames = map[string]routing.RetryOn{
	"5xx": routing.RetryOn5xx, "gateway-error": routing.RetryOnGatewayError, "reset": routing.RetryOnReset,
	"reset-before-request": routing.RetryOnResetBeforeRequest, "connect-failure": routing.RetryOnConnectFailure,
	"retriable-4xx": routing.RetryOnRetriable4xx, "refused-stream": routing.RetryOnRefusedStream,
	"retriable-status-codes": routing.RetryOnRetriableStatusCodes, "envoy-ratelimited": routing.RetryOnEnvoyRateLimited,
	"cancelled": routing.RetryOnGRPCCancelled, "deadline-exceeded": routing.RetryOnGRPCDeadlineExceeded,
	"internal": routing.RetryOnGRPCInternal, "resource-exhausted": routing.RetryOnGRPCResourceExhausted,
	"unavailable": routing.RetryOnGRPCUnavailable, "http3-post-connect-failure": routing.RetryOnHTTP3PostConnectFailure,
}

// PreviousHostsPredicate is the only retry_host_predicate: retries go to
// hosts not tried yet when there are any. The proxy does that anyway.
const PreviousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"

func buildRetryPolicy(rp *routev3.RetryPolicy) (*routing.RetryPolicy, *fieldError) {
	if err := checkFields(rp, "retry_on", "num_retries", "per_try_timeout", "retry_host_predicate",
		"host_selection_retry_max_attempts", "retriable_status_codes", "retry_back_off"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	p := &routing.RetryPolicy{NumRetries: 1, HostAttempts: 1, BackoffBase: 25 * time.Millisecond}
	if n := rp.GetNumRetries(); n != nil {
		p.NumRetries = int(n.GetValue())
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		p.PerTry = d.AsDuration()
	}
	for _, tok := range strings.Split(rp.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}

		p.On |= retryOnNames[tok]
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		p.StatusCodes = append(p.StatusCodes, int(c))
	}
	for i, hp := range rp.GetRetryHostPredicate() {
		field := fmt.Sprintf(".retry_host_predicate[%d]", i)
		if hp.GetName() != PreviousHostsPredicate {
			return nil, fieldErr(field+".name", "%q: %w", hp.GetName(), ErrUnsupported)
		}
		if tc := hp.GetTypedConfig(); tc != nil {
			if err := tc.UnmarshalTo(&previoushostsv3.PreviousHostsPredicate{}); err != nil {
				return nil, fieldErr(field+".typed_config", "decoding PreviousHostsPredicate: %w", err)
			}
		}
	}
	if n := rp.GetHostSelectionRetryMaxAttempts(); n > 0 {
		p.HostAttempts = int(n)
	}
	if b := rp.GetRetryBackOff(); b != nil {
		if err := checkFields(b, "base_interval", "max_interval"); err != nil {
			return nil, fieldErr(".retry_back_off", "%w", err)
		}
		p.BackoffBase = b.GetBaseInterval().AsDuration()
		if p.BackoffBase <= 0 {
			return nil, fieldErr(".retry_back_off.base_interval", "must be positive")
		}
		if m := b.GetMaxInterval(); m != nil {
			p.BackoffMax = m.AsDuration()
			if p.BackoffMax < p.BackoffBase {
				return nil, fieldErr(".retry_back_off.max_interval", "less than base_interval")
			}
		}
	}
	if p.BackoffMax == 0 {
		p.BackoffMax = 10 * p.BackoffBase
	}
	return p, nil
}
