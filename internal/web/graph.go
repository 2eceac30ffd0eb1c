package web

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gitmesh/gitmesh/api/admin"
)

// requestsMetric is the proxies' request counter (docs/xds-conventions.md).
const requestsMetric = "istio_requests_total"

// unknown is the value Istio's labels carry when a proxy cannot know one.
const unknown = "unknown"

// seriesKey is one istio_requests_total series reduced to the labels the
// graph reads.
type seriesKey struct {
	// outbound is reporter="source": the proxy sent the request.
	outbound bool
	// meshPeer is an inbound request from a client with a verified mesh
	// identity (source_principal set): its sender reports it too.
	meshPeer bool

	srcWorkload, srcNamespace, srcApp, srcVersion string
	dstService, dstServiceName, dstNamespace      string
	dstWorkload, dstApp, dstVersion               string
	// fail is a 5xx response.
	fail bool
}

// counts is one proxy's request counters by series.
type counts map[seriesKey]float64

// parseCounts reads a /metrics page in format (delimited protobuf, or
// else the Prometheus text format) into counts.
func parseCounts(r io.Reader, format expfmt.Format) (counts, error) {
	c := counts{}
	if format.FormatType() == expfmt.TypeProtoDelim {
		dec := expfmt.NewDecoder(r, format)
		for {
			var mf dto.MetricFamily
			err := dec.Decode(&mf)
			if errors.Is(err, io.EOF) {
				return c, nil
			}
			if err != nil {
				return nil, fmt.Errorf("decoding metrics: %w", err)
			}
			c.add(&mf)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	c.add(families[requestsMetric])
	return c, nil
}

// add sums the series of mf into c if it is the request counter.
func (c counts) add(mf *dto.MetricFamily) {
	if mf == nil || mf.GetName() != requestsMetric {
		return
	}
	for _, m := range mf.GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		k := seriesKey{
			outbound:    l["reporter"] == "source",
			meshPeer:    l["reporter"] == "destination" && orUnknown(l["source_principal"]) != unknown,
			srcWorkload: orUnknown(l["source_workload"]), srcNamespace: orUnknown(l["source_workload_namespace"]),
			srcApp: orUnknown(l["source_app"]), srcVersion: orUnknown(l["source_version"]),
			dstService: orUnknown(l["destination_service"]), dstServiceName: orUnknown(l["destination_service_name"]),
			dstNamespace: orUnknown(l["destination_service_namespace"]), dstWorkload: orUnknown(l["destination_workload"]),
			dstApp: orUnknown(l["destination_app"]), dstVersion: orUnknown(l["destination_version"]),
			fail: is5xx(l["response_code"]),
		}
		c[k] += m.GetCounter().GetValue() + m.GetUntyped().GetValue()
	}
}

func orUnknown(s string) string {
	if s == "" {
		return unknown
	}
	return s
}

// is5xx reports whether an HTTP status code label is 500-599.
func is5xx(code string) bool {
	return len(code) == 3 && code[0] == '5' && code[1] >= '0' && code[1] <= '9' && code[2] >= '0' && code[2] <= '9'
}

// flow is the traffic of one series over the window.
type flow struct {
	// requests counted in the window; rate is requests per second.
	requests, rate float64
}

// buildGraph draws traffic as Kiali's versioned app graph: caller ->
// service -> version that served it.
//
// Every proxy reports what it sends (reporter="source") and what it
// receives ("destination"), so a request between two sidecars is counted
// twice. The graph reads the sending side, which knows both ends; a
// received request counts only when its sender cannot report it: its
// client had no mesh identity (no source_principal) and no proxy reported
// sending anything to that service, i.e. the service is reached from
// outside the mesh alone. It is drawn from the unknown node. Requests no
// service received (no route, a direct response: destination_service
// "unknown") are left out.
func buildGraph(traffic map[seriesKey]flow) admin.Graph {
	sent := map[string]bool{} // services some proxy reported sending to
	for k, f := range traffic {
		if k.outbound && f.requests > 0 {
			sent[k.dstService] = true
		}
	}
	type edgeKey struct{ source, target string }
	type edgeSum struct{ requests, fails, rate float64 }
	nodes := map[string]admin.GraphNode{}
	edges := map[edgeKey]*edgeSum{}
	addEdge := func(src, dst string, k seriesKey, f flow) {
		e := edges[edgeKey{src, dst}]
		if e == nil {
			e = &edgeSum{}
			edges[edgeKey{src, dst}] = e
		}
		e.requests += f.requests
		e.rate += f.rate
		if k.fail {
			e.fails += f.requests
		}
	}
	for k, f := range traffic {
		if f.requests <= 0 || k.dstService == unknown {
			continue
		}
		var src admin.GraphNode
		switch {
		case k.outbound:
			src = appNode(k.srcNamespace, k.srcApp, k.srcVersion, k.srcWorkload)
		case k.meshPeer || sent[k.dstService]:
			continue
		default:
			src = admin.GraphNode{ID: string(admin.NodeUnknown), Kind: admin.NodeUnknown, Name: unknown}
		}
		svc := serviceNode(k)
		nodes[src.ID], nodes[svc.ID] = src, svc
		addEdge(src.ID, svc.ID, k, f)
		if k.dstWorkload == unknown && k.dstApp == unknown && k.dstVersion == unknown {
			continue // an endpoint without workload metadata: the service ends the path
		}
		app := k.dstApp
		if app == unknown {
			app = svc.Name
		}
		dst := appNode(k.dstNamespace, app, k.dstVersion, k.dstWorkload)
		nodes[dst.ID] = dst
		addEdge(svc.ID, dst.ID, k, f)
	}

	g := admin.Graph{Nodes: []admin.GraphNode{}, Edges: []admin.GraphEdge{}}
	for _, n := range nodes {
		g.Nodes = append(g.Nodes, n)
	}
	slices.SortFunc(g.Nodes, func(a, b admin.GraphNode) int { return cmp.Compare(a.ID, b.ID) })
	out := map[string]float64{} // requests out of each service
	for k, e := range edges {
		if nodes[k.source].Kind == admin.NodeService {
			out[k.source] += e.requests
		}
	}
	for k, e := range edges {
		ge := admin.GraphEdge{Source: k.source, Target: k.target, Rate: e.rate, Requests: e.requests}
		if e.requests > 0 {
			ge.SuccessRate = ptr(100 * (e.requests - e.fails) / e.requests)
		}
		if total := out[k.source]; nodes[k.source].Kind == admin.NodeService && total > 0 {
			ge.Share = ptr(100 * e.requests / total)
		}
		g.Edges = append(g.Edges, ge)
	}
	slices.SortFunc(g.Edges, func(a, b admin.GraphEdge) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Target, b.Target))
	})
	return g
}

// appNode is a version of an app; a workload without an app label is
// named by its workload.
func appNode(namespace, app, version, workload string) admin.GraphNode {
	if app == unknown && workload != unknown {
		app = workload
	}
	n := admin.GraphNode{ID: "app:" + namespace + "/" + app + "/" + version, Kind: admin.NodeApp, Namespace: namespace, Name: app, Version: version}
	if version == unknown {
		n.Version = ""
	}
	return n
}

// serviceNode is the destination service of k.
func serviceNode(k seriesKey) admin.GraphNode {
	name := k.dstServiceName
	if name == unknown {
		name, _, _ = strings.Cut(k.dstService, ".")
	}
	ns := k.dstNamespace
	if ns == unknown {
		ns = ""
	}
	return admin.GraphNode{ID: "service:" + k.dstService, Kind: admin.NodeService, Namespace: ns, Name: name, Service: k.dstService}
}

func ptr[T any](v T) *T { return &v }
