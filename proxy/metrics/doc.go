// Package metrics is the proxy's Prometheus registry: Istio's standard
// request and TCP metrics with their label sets (reporter, workloads,
// services, principals, response flags), the proxy's xDS, circuit breaker,
// outlier and RBAC/JWT counters, and a per-cluster cache of request series.
package metrics
