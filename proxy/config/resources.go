package config

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
	ClusterType  = resourcev3.ClusterType
	EndpointType = resourcev3.EndpointType
	ListenerType = resourcev3.ListenerType
	RouteType    = resourcev3.RouteType
	SecretType   = resourcev3.SecretType
)

// XDSTypes lists the subscribed types in the order a stream requests them.
var XDSTypes = [...]string{ClusterType, EndpointType, ListenerType, RouteType, SecretType}

// NamedTypes are the types subscribed by resource name: the names the
// accepted clusters and listeners reference (see subscriptions).
var NamedTypes = [...]string{EndpointType, RouteType, SecretType}

// WildcardType reports whether typeURL is subscribed as a wildcard (state of
// the world: every response carries the full set).
func WildcardType(typeURL string) bool { return typeURL == ClusterType || typeURL == ListenerType }

// KindName is the short name of a type URL used in NACK messages.
func KindName(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// ResourceError is a build failure attributed to one resource. Its message
// is the NACK's error_detail: it names the resource and the field.
type ResourceError struct {
	// TypeURL and Name identify the rejected resource; Field is the path
	// of the offending field in it ("" for the resource as a whole).
	TypeURL string
	Name    string
	Field   string
	Err     error
}

// Error names the resource and the field, as a NACK's error_detail.
func (e *ResourceError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s %q: %v", KindName(e.TypeURL), e.Name, e.Err)
	}
	return fmt.Sprintf("%s %q: %s: %v", KindName(e.TypeURL), e.Name, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *ResourceError) Unwrap() error { return e.Err }

// ErrUnsupported marks a field or value the proxy does not implement.
var ErrUnsupported = errors.New("not supported by gitmesh-proxy")

// ResourceSet is the received resources of every type with their versions.
// It is treated as a value: with returns a modified copy, so a rejected
// update never touches the accepted set.
type ResourceSet struct {
	// Versions is the version_info of the last accepted response per type.
	Versions map[string]string
	// ByType maps a type URL to resource name to decoded resource.
	ByType map[string]map[string]proto.Message
	// Received records the wildcard types that have had a first response.
	Received map[string]bool
}

// NewResourceSet returns an empty set, the state before any update.
func NewResourceSet() *ResourceSet {
	s := &ResourceSet{Versions: map[string]string{}, ByType: map[string]map[string]proto.Message{}, Received: map[string]bool{}}
	for _, t := range XDSTypes {
		s.ByType[t] = map[string]proto.Message{}
	}
	return s
}

// With returns a copy of s where the resources of typeURL are updated by a
// response: replaced for wildcard types, merged for named ones (state of the
// world for RDS and EDS keeps resources a response omits) and pruned to the
// names in subscribed.
func (s *ResourceSet) With(typeURL, version string, res map[string]proto.Message, subscribed []string) *ResourceSet {
	n := &ResourceSet{Versions: maps.Clone(s.Versions), ByType: maps.Clone(s.ByType), Received: maps.Clone(s.Received)}
	n.Versions[typeURL] = version
	n.Received[typeURL] = true
	if WildcardType(typeURL) {
		n.ByType[typeURL] = res
		return n
	}
	merged := map[string]proto.Message{}
	for _, name := range subscribed {
		if m, ok := res[name]; ok {
			merged[name] = m
		} else if m, ok := s.ByType[typeURL][name]; ok {
			merged[name] = m
		}
	}
	n.ByType[typeURL] = merged
	return n
}

// Pruned returns a copy of s whose named types keep only subscribed names.
func (s *ResourceSet) Pruned(subs map[string][]string) *ResourceSet {
	n := &ResourceSet{Versions: maps.Clone(s.Versions), ByType: maps.Clone(s.ByType), Received: maps.Clone(s.Received)}
	for typeURL, names := range subs {
		keep := map[string]proto.Message{}
		for _, name := range names {
			if m, ok := s.ByType[typeURL][name]; ok {
				keep[name] = m
			}
		}
		n.ByType[typeURL] = keep
	}
	return n
}

// Subscriptions returns, per named type, the names the accepted clusters
// and listeners reference, sorted: EDS service names, RDS route
// configuration names and SDS secret names.
func (s *ResourceSet) Subscriptions() map[string][]string {
	var eds, rds, sds []string
	for _, m := range s.ByType[ClusterType] {
		c := m.(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS {
			eds = append(eds, edsServiceName(c))
		}
		sds = append(sds, clusterSecretNames(c)...)
	}
	for _, m := range s.ByType[ListenerType] {
		rds = append(rds, listenerRDSNames(m.(*listenerv3.Listener))...)
		sds = append(sds, listenerSecretNames(m.(*listenerv3.Listener))...)
	}
	out := map[string][]string{}
	for t, names := range map[string][]string{EndpointType: eds, RouteType: rds, SecretType: sds} {
		slices.Sort(names)
		out[t] = slices.Compact(names)
	}
	return out
}

// DecodeResources unmarshals a response's resources into name → message.
func DecodeResources(typeURL string, anys []*anypb.Any) (map[string]proto.Message, error) {
	out := make(map[string]proto.Message, len(anys))
	for i, a := range anys {
		if a.GetTypeUrl() != typeURL {
			return nil, fmt.Errorf("resources[%d]: type %q in a %s response", i, a.GetTypeUrl(), KindName(typeURL))
		}
		var m proto.Message
		switch typeURL {
		case ClusterType:
			m = &clusterv3.Cluster{}
		case EndpointType:
			m = &endpointv3.ClusterLoadAssignment{}
		case ListenerType:
			m = &listenerv3.Listener{}
		case RouteType:
			m = &routev3.RouteConfiguration{}
		case SecretType:
			m = &tlsv3.Secret{}
		default:
			return nil, fmt.Errorf("type %q: %w", typeURL, ErrUnsupported)
		}
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("resources[%d]: decoding %s: %w", i, KindName(typeURL), err)
		}
		name := ResourceName(m)
		if name == "" {
			return nil, fmt.Errorf("resources[%d]: %s has no name", i, KindName(typeURL))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("resources[%d]: duplicate %s %q", i, KindName(typeURL), name)
		}
		out[name] = m
	}
	return out, nil
}

// ResourceName returns an xDS resource's name (a
// ClusterLoadAssignment's cluster_name), "" for other messages.
func ResourceName(m proto.Message) string {
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
		return fmt.Errorf("field %s: %w", bad, ErrUnsupported)
	}
	return nil
}
