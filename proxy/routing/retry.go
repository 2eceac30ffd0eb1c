package routing

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"time"
)

// RetryOn is a set of retry_on conditions.
type RetryOn uint32

const (
	// The retry_on conditions, as Envoy names them.
	RetryOn5xx RetryOn = 1 << iota
	RetryOnGatewayError
	RetryOnReset
	RetryOnResetBeforeRequest
	RetryOnConnectFailure
	RetryOnRetriable4xx
	RetryOnRefusedStream
	RetryOnRetriableStatusCodes
	RetryOnEnvoyRateLimited
	RetryOnGRPCCancelled
	RetryOnGRPCDeadlineExceeded
	RetryOnGRPCInternal
	RetryOnGRPCResourceExhausted
	RetryOnGRPCUnavailable
	RetryOnHTTP3PostConnectFailure
)

// RetryPolicy is a built RetryPolicy.
type RetryPolicy struct {
	// On is retry_on; NumRetries is num_retries.
	On         RetryOn
	NumRetries int
	PerTry     time.Duration // 0: none
	// StatusCodes are retriable_status_codes, for RetryOnRetriableStatusCodes.
	StatusCodes []int
	// HostAttempts is how many picks a retry makes to find a host not
	// tried before (host_selection_retry_max_attempts, at least 1).
	HostAttempts int
	// BackoffBase and BackoffMax are retry_back_off (Envoy's 25ms and
	// 10 times the base by default).
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// AttemptError is how an attempt without a response failed.
type AttemptError int

const (
	// The ways an attempt fails before a response, and AttemptOK.
	AttemptOK AttemptError = iota
	AttemptConnectFailure
	AttemptRefusedStream
	AttemptReset
	AttemptPerTryTimeout
	AttemptAborted // route timeout or client gone: never retried
)

// Retriable reports whether the policy retries an attempt's result.
func (p *RetryPolicy) Retriable(resp *http.Response, ae AttemptError) bool {
	on := p.On
	switch ae {
	case AttemptConnectFailure:
		return on&(RetryOn5xx|RetryOnGatewayError|RetryOnReset|RetryOnResetBeforeRequest|RetryOnConnectFailure) != 0
	case AttemptRefusedStream:
		return on&(RetryOn5xx|RetryOnGatewayError|RetryOnReset|RetryOnRefusedStream) != 0
	case AttemptReset, AttemptPerTryTimeout:
		return on&(RetryOn5xx|RetryOnGatewayError|RetryOnReset) != 0
	case AttemptAborted:
		return false
	}
	code := resp.StatusCode
	switch {
	case on&RetryOn5xx != 0 && code >= 500:
		return true
	case on&RetryOnGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case on&RetryOnRetriable4xx != 0 && code == 409:
		return true
	case on&RetryOnRetriableStatusCodes != 0 && slices.Contains(p.StatusCodes, code):
		return true
	case on&RetryOnEnvoyRateLimited != 0 && resp.Header.Get("X-Envoy-Ratelimited") != "":
		return true
	}
	if on&(RetryOnGRPCCancelled|RetryOnGRPCDeadlineExceeded|RetryOnGRPCInternal|RetryOnGRPCResourceExhausted|RetryOnGRPCUnavailable) != 0 {
		switch resp.Header.Get("Grpc-Status") {
		case "1":
			return on&RetryOnGRPCCancelled != 0
		case "4":
			return on&RetryOnGRPCDeadlineExceeded != 0
		case "8":
			return on&RetryOnGRPCResourceExhausted != 0
		case "13":
			return on&RetryOnGRPCInternal != 0
		case "14":
			return on&RetryOnGRPCUnavailable != 0
		}
	}
	return false
}

// Backoff returns the wait before retry n (0-based): Envoy's fully
// jittered exponential back-off, random in [0, base*2^n) capped by max.
func (p *RetryPolicy) Backoff(n int) time.Duration {
	interval := p.BackoffBase
	for range n {
		if interval > p.BackoffMax/2 {
			interval = p.BackoffMax
			break
		}
		interval *= 2
	}
	return min(time.Duration(rand.Int64N(int64(interval))), p.BackoffMax)
}
