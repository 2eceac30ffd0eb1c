// Package upstream is the proxy's view of clusters at request time:
// endpoints and their load balancers (round robin, least request, random,
// ring hash, Maglev), hash policies, circuit breakers, outlier detection,
// STRICT_DNS resolution and the transport socket chosen per endpoint.
package upstream
