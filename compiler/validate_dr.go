package compiler

import (
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1"
)

// checkTrafficPolicy validates a DestinationRule trafficPolicy (top level
// or a subset's) and reports whether it can be compiled.
func checkTrafficPolicy(r *reporter, path string, tp *networking.TrafficPolicy) bool {
	if tp == nil {
		return true
	}
	ok := checkPolicyParts(r, path, tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection())
	ok = checkClientTLS(r, path+".tls", tp.GetTls()) && ok
	seen := map[uint32]bool{}
	for i, pl := range tp.GetPortLevelSettings() {
		pp := fmt.Sprintf("%s.portLevelSettings[%d]", path, i)
		n := pl.GetPort().GetNumber()
		switch {
		case pl.GetPort() == nil:
			r.errorf(CodeMissingField, pp+".port", "port is required")
			ok = false
			continue
		case !checkPort(r, pp+".port.number", n):
			ok = false
			continue
		case seen[n]:
			r.errorf(CodeDuplicateEntry, pp+".port.number", "port %d has settings twice", n)
			ok = false
			continue
		}
		seen[n] = true
		ok = checkPolicyParts(r, pp, pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection()) && ok
		ok = checkClientTLS(r, pp+".tls", pl.GetTls()) && ok
	}
	return ok
}

func checkPolicyParts(r *reporter, path string, lb *networking.LoadBalancerSettings, cp *networking.ConnectionPoolSettings, od *networking.OutlierDetection) bool {
	ok := checkLoadBalancer(r, path+".loadBalancer", lb)
	ok = checkConnectionPool(r, path+".connectionPool", cp) && ok
	return checkOutlierDetection(r, path+".outlierDetection", od) && ok
}

func checkLoadBalancer(r *reporter, path string, lb *networking.LoadBalancerSettings) bool {
	if lb == nil {
		return true
	}
	switch x := lb.GetLbPolicy().(type) {
	case *networking.LoadBalancerSettings_Simple:
		if x.Simple == networking.LoadBalancerSettings_PASSTHROUGH {
			r.errorf(CodeUnsupportedValue, path+".simple", "load balancer PASSTHROUGH is not supported yet (it needs original-destination routing)")
			return false
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		ch := x.ConsistentHash
		switch k := ch.GetHashKey().(type) {
		case nil:
			r.errorf(CodeMissingField, path+".consistentHash", "one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required")
			return false
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			if !isHeaderName(k.HttpHeaderName) {
				r.errorf(CodeInvalidValue, path+".consistentHash.httpHeaderName", "%q is not a valid header name", k.HttpHeaderName)
				return false
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
			if k.HttpCookie.GetName() == "" {
				r.errorf(CodeMissingField, path+".consistentHash.httpCookie.name", "cookie name is required")
				return false
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
			if !k.UseSourceIp {
				r.errorf(CodeInvalidValue, path+".consistentHash.useSourceIp", "useSourceIp: false hashes on nothing; remove consistentHash or set it to true")
				return false
			}
		}
	}
	return true
}

func checkConnectionPool(r *reporter, path string, cp *networking.ConnectionPoolSettings) bool {
	if cp == nil {
		return true
	}
	ok := true
	nonNegative := func(field string, v int32) {
		if v < 0 {
			r.errorf(CodeInvalidValue, path+"."+field, "%d must not be negative", v)
			ok = false
		}
	}
	positive := func(field string, d *durationpb.Duration) {
		if d != nil && d.AsDuration() < 1e6 {
			r.errorf(CodeInvalidValue, path+"."+field, "must be at least 1ms")
			ok = false
		}
	}
	if t := cp.GetTcp(); t != nil {
		nonNegative("tcp.maxConnections", t.GetMaxConnections())
		positive("tcp.connectTimeout", t.GetConnectTimeout())
	}
	if h := cp.GetHttp(); h != nil {
		nonNegative("http.http1MaxPendingRequests", h.GetHttp1MaxPendingRequests())
		nonNegative("http.http2MaxRequests", h.GetHttp2MaxRequests())
		nonNegative("http.maxRequestsPerConnection", h.GetMaxRequestsPerConnection())
		nonNegative("http.maxRetries", h.GetMaxRetries())
		positive("http.idleTimeout", h.GetIdleTimeout())
	}
	return ok
}

func checkOutlierDetection(r *reporter, path string, od *networking.OutlierDetection) bool {
	if od == nil {
		return true
	}
	ok := true
	for _, d := range []struct {
		field string
		v     *durationpb.Duration
	}{{"interval", od.GetInterval()}, {"baseEjectionTime", od.GetBaseEjectionTime()}} {
		if d.v != nil && d.v.AsDuration() < 1e6 {
			r.errorf(CodeInvalidValue, path+"."+d.field, "must be at least 1ms")
			ok = false
		}
	}
	for _, pc := range []struct {
		field string
		v     int32
	}{{"maxEjectionPercent", od.GetMaxEjectionPercent()}, {"minHealthPercent", od.GetMinHealthPercent()}} {
		if pc.v < 0 || pc.v > 100 {
			r.errorf(CodeInvalidValue, path+"."+pc.field, "%d is not in 0-100", pc.v)
			ok = false
		}
	}
	return ok
}

// checkClientTLS validates a DestinationRule tls setting as Istio does
// (pkg/config/validation/agent ValidateTLS): MUTUAL needs
// clientCertificate and privateKey; insecureSkipVerify excludes
// caCertificates and subjectAltNames. credentialName (a Kubernetes Secret
// an egress gateway's agent fetches) is not supported: Istio's sidecars
// ignore a DestinationRule's SIMPLE or MUTUAL tls that names one, and
// gitmesh proxies cannot read Secrets.
func checkClientTLS(r *reporter, path string, tls *networking.ClientTLSSettings) bool {
	if tls == nil {
		return true
	}
	ok := true
	mode := tls.GetMode()
	if tls.GetCredentialName() != "" {
		r.errorf(CodeUnsupportedField, path+".credentialName", "credentialName is not supported: gitmesh proxies cannot read Kubernetes Secrets (Istio's sidecars ignore it and send plain text); mount the files and use clientCertificate, privateKey and caCertificates")
		ok = false
	}
	if tls.GetInsecureSkipVerify().GetValue() &&
		(mode == networking.ClientTLSSettings_SIMPLE || mode == networking.ClientTLSSettings_MUTUAL) &&
		(tls.GetCaCertificates() != "" || tls.GetSubjectAltNames() != nil) {
		r.errorf(CodeConflictingFields, path+".insecureSkipVerify", "caCertificates and subjectAltNames cannot be set when insecureSkipVerify is true")
		ok = false
	}
	if mode == networking.ClientTLSSettings_MUTUAL && tls.GetCredentialName() == "" {
		if tls.GetClientCertificate() == "" {
			r.errorf(CodeMissingField, path+".clientCertificate", "clientCertificate is required for mode MUTUAL")
			ok = false
		}
		if tls.GetPrivateKey() == "" {
			r.errorf(CodeMissingField, path+".privateKey", "privateKey is required for mode MUTUAL")
			ok = false
		}
	}
	return ok
}
