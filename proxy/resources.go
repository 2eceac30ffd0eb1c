package proxy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The xDS types the proxy subscribes to, in Envoy's make-before-break order.
const (
	clusterType  = resourcev3.ClusterType
	endpointType = resourcev3.EndpointType
	listenerType = resourcev3.ListenerType
	routeType    = resourcev3.RouteType
	secretType   = resourcev3.SecretType
)

// xdsTypes lists the subscribed types in the order a stream requests them.
var xdsTypes = [...]string{clusterType, endpointType, listenerType, routeType, secretType}

// namedTypes are the types subscribed by resource name: the names the
// accepted clusters and listeners reference (see subscriptions).
var namedTypes = [...]string{endpointType, routeType, secretType}

// wildcardType reports whether typeURL is subscribed as a wildcard (state of
// the world: every response carries the full set).
func wildcardType(typeURL string) bool { return typeURL == clusterType || typeURL == listenerType }

// kindName is the short name of a type URL used in NACK messages.
func kindName(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// resourceError is a build failure attributed to one resource. Its message
// is the NACK's error_detail: it names the resource and the field.
type resourceError struct {
	typeURL string
	name    string
	field   string
	err     error
}

func (e *resourceError) Error() string {
	if e.field == "" {
		return fmt.Sprintf("%s %q: %v", kindName(e.typeURL), e.name, e.err)
	}
	return fmt.Sprintf("%s %q: %s: %v", kindName(e.typeURL), e.name, e.field, e.err)
}

func (e *resourceError) Unwrap() error { return e.err }

// errUnsupported marks a field or value the proxy does not implement.
var errUnsupported = errors.New("not supported by gitmesh-proxy")

// resourceSet is the received resources of every type with their versions.
// It is treated as a value: with returns a modified copy, so a rejected
// update never touches the accepted set.
type resourceSet struct {
	// versions is the version_info of the last accepted response per type.
	versions map[string]string
	// byType maps a type URL to resource name to decoded resource.
	byType map[string]map[string]proto.Message
	// received records the wildcard types that have had a first response.
	received map[string]bool
}

func newResourceSet() *resourceSet {
	s := &resourceSet{versions: map[string]string{}, byType: map[string]map[string]proto.Message{}, received: map[string]bool{}}
	for _, t := range xdsTypes {
		s.byType[t] = map[string]proto.Message{}
	}
	return s
}

// with returns a copy of s where the resources of typeURL are updated by a
// response: replaced for wildcard types, merged for named ones (state of the
// world for RDS and EDS keeps resources a response omits) and pruned to the
// names in subscribed.
func (s *resourceSet) with(typeURL, version string, res map[string]proto.Message, subscribed []string) *resourceSet {
	n := &resourceSet{versions: maps.Clone(s.versions), byType: maps.Clone(s.byType), received: maps.Clone(s.received)}
	n.versions[typeURL] = version
	n.received[typeURL] = true
	if wildcardType(typeURL) {
		n.byType[typeURL] = res
		return n
	}
	merged := map[string]proto.Message{}
	for _, name := range subscribed {
		if m, ok := res[name]; ok {
			merged[name] = m
		} else if m, ok := s.byType[typeURL][name]; ok {
			merged[name] = m
		}
	}
	n.byType[typeURL] = merged
	return n
}

// pruned returns a copy of s whose named types keep only subscribed names.
func (s *resourceSet) pruned(subs map[string][]string) *resourceSet {
	n := &resourceSet{versions: maps.Clone(s.versions), byType: maps.Clone(s.byType), received: maps.Clone(s.received)}
	for typeURL, names := range subs {
		keep := map[string]proto.Message{}
		for _, name := range names {
			if m, ok := s.byType[typeURL][name]; ok {
				keep[name] = m
			}
		}
		n.byType[typeURL] = keep
	}
	return n
}

// subscriptions returns, per named type, the names the accepted clusters
// and listeners reference, sorted: EDS service names, RDS route
// configuration names and SDS secret names.
func (s *resourceSet) subscriptions() map[string][]string {
	var eds, rds, sds []string
	for _, m := range s.byType[clusterType] {
		c := m.(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS {
			eds = append(eds, edsServiceName(c))
		}
		sds = append(sds, clusterSecretNames(c)...)
	}
	for _, m := range s.byType[listenerType] {
		rds = append(rds, listenerRDSNames(m.(*listenerv3.Listener))...)
		sds = append(sds, listenerSecretNames(m.(*listenerv3.Listener))...)
	}
	out := map[string][]string{}
	for t, names := range map[string][]string{endpointType: eds, routeType: rds, secretType: sds} {
		slices.Sort(names)
		out[t] = slices.Compact(names)
	}
	return out
}

// decodeResources unmarshals a response's resources into name → message.
func decodeResources(typeURL string, anys []*anypb.Any) (map[string]proto.Message, error) {
	out := make(map[string]proto.Message, len(anys))
	for i, a := range anys {
		if a.GetTypeUrl() != typeURL {
			return nil, fmt.Errorf("resources[%d]: type %q in a %s response", i, a.GetTypeUrl(), kindName(typeURL))
		}
		var m proto.Message
		switch typeURL {
		case clusterType:
			m = &clusterv3.Cluster{}
		case endpointType:
			m = &endpointv3.ClusterLoadAssignment{}
		case listenerType:
			m = &listenerv3.Listener{}
		case routeType:
			m = &routev3.RouteConfiguration{}
		case secretType:
			m = &tlsv3.Secret{}
		default:
			return nil, fmt.Errorf("type %q: %w", typeURL, errUnsupported)
		}
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("resources[%d]: decoding %s: %w", i, kindName(typeURL), err)
		}
		name := resourceName(m)
		if name == "" {
			return nil, fmt.Errorf("resources[%d]: %s has no name", i, kindName(typeURL))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("resources[%d]: duplicate %s %q", i, kindName(typeURL), name)
		}
		out[name] = m
	}
	return out, nil
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	case *tlsv3.Secret:
		return r.GetName()
	}
	return ""
}

// checkFields returns an error naming the first populated field of m that
// is not in allowed: a field the proxy would otherwise silently ignore.
func checkFields(m proto.Message, allowed ...string) error {
	var bad string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = string(fd.Name())
			return false
		}
		return true
	})
	if bad != "" {
		return fmt.Errorf("field %s: %w", bad, errUnsupported)
	}
	return nil
}
