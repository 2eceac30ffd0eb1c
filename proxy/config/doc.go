// Package config translates xDS resources into the proxy's runtime model:
// it decodes and validates listeners, route configurations, clusters,
// endpoints and secrets, rejecting what the proxy does not implement with
// a ResourceError naming the resource and field (the NACK's detail), and
// builds the values of packages routing, upstream, auth and mtls. It is
// the only package of the proxy that reads xDS protos.
package config
