// Package routing is the proxy's route selection and per-route policy at
// request time: route tables and virtual host lookup, route matching
// (path, headers, query parameters, gRPC, dynamic metadata), rewrites,
// redirects, direct responses, header mutations, CORS, fault injection,
// retry policies and mirrors.
package routing
