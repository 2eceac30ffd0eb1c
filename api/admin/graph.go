package admin

import "time"

// Graph is the mesh's traffic as Kiali draws it (GET /api/v1/graph): who
// calls which service, and how each service's traffic splits over its
// versions, from the proxies' istio_requests_total over the last Window.
type Graph struct {
	// Time is when the newest scrape the graph is computed from ended (UTC).
	Time time.Time `json:"time"`
	// WindowSeconds is the span the rates are computed over: from the
	// oldest scrape kept (at most the graph window ago) to the newest. 0
	// when only one scrape was available: edges are known, rates are not.
	WindowSeconds float64 `json:"windowSeconds"`
	// Proxies is how many proxies were scraped.
	Proxies int `json:"proxies"`
	// Nodes are sorted by ID.
	Nodes []GraphNode `json:"nodes"`
	// Edges are sorted by Source, then Target.
	Edges []GraphEdge `json:"edges"`
	// Errors name the proxies that could not be scraped; the graph leaves
	// their traffic out.
	Errors []string `json:"errors,omitempty"`
}

// GraphNodeKind is what a graph node stands for.
type GraphNodeKind string

// Node kinds, as Kiali's versioned app graph has them.
const (
	// NodeService is a service (a host), which callers address.
	NodeService GraphNodeKind = "service"
	// NodeApp is a version of an app (the app and version labels of a
	// workload; a workload without an app label is named by its
	// workload), which calls and serves.
	NodeApp GraphNodeKind = "app"
	// NodeUnknown is traffic from outside the mesh: requests a proxy
	// received from a client it could not identify.
	NodeUnknown GraphNodeKind = "unknown"
)

// GraphNode is a service, a versioned app, or the unknown source.
type GraphNode struct {
	// ID is unique in the graph: "service:<host>",
	// "app:<namespace>/<app>/<version>", or "unknown".
	ID   string        `json:"id"`
	Kind GraphNodeKind `json:"kind"`
	// Namespace is the node's namespace ("" for unknown).
	Namespace string `json:"namespace,omitempty"`
	// Name is the service's short name, or the app's.
	Name string `json:"name"`
	// Version is an app node's version label ("" when it has none).
	Version string `json:"version,omitempty"`
	// Service is a service node's host (e.g.
	// "reviews.default.svc.cluster.local").
	Service string `json:"service,omitempty"`
}

// GraphEdge is traffic from one node to another over the window: a caller
// to a service, or a service to one of the versions that served it.
type GraphEdge struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// Rate is requests per second.
	Rate float64 `json:"rate"`
	// Requests is how many requests the window saw (the cumulative count
	// when WindowSeconds is 0).
	Requests float64 `json:"requests"`
	// SuccessRate is the percentage of those requests that were not
	// answered with a 5xx (the built-in request-success-rate's rule); nil
	// when there were none.
	SuccessRate *float64 `json:"successRate,omitempty"`
	// Share is, for an edge out of a service, its percentage of the
	// service's requests: the traffic split. nil on other edges.
	Share *float64 `json:"share,omitempty"`
}
