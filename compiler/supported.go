package compiler

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedField reports whether the compiler implements field of message.
// A field Istio knows but this returns false for gets CodeUnsupportedField,
// so nothing a user writes is silently ignored. Extend this list together
// with the translation and docs/diagnostics.md.
func supportedField(message protoreflect.FullName, field protoreflect.Name) bool {
	switch string(message) + "." + string(field) {
	case
		// VirtualService
		"istio.networking.v1alpha3.VirtualService.hosts",
		"istio.networking.v1alpha3.VirtualService.gateways",
		"istio.networking.v1alpha3.VirtualService.http",
		"istio.networking.v1alpha3.HTTPRoute.name",
		"istio.networking.v1alpha3.HTTPRoute.match",
		"istio.networking.v1alpha3.HTTPRoute.route",
		"istio.networking.v1alpha3.HTTPMatchRequest.name",
		"istio.networking.v1alpha3.HTTPMatchRequest.uri",
		"istio.networking.v1alpha3.HTTPMatchRequest.headers",
		// StringMatch: uri takes exact and prefix, headers exact only
		// (checked in validate.go).
		"istio.networking.v1alpha3.StringMatch.exact",
		"istio.networking.v1alpha3.StringMatch.prefix",
		"istio.networking.v1alpha3.HTTPRouteDestination.destination",
		"istio.networking.v1alpha3.HTTPRouteDestination.weight",
		"istio.networking.v1alpha3.Destination.host",
		"istio.networking.v1alpha3.Destination.subset",
		"istio.networking.v1alpha3.Destination.port",
		"istio.networking.v1alpha3.PortSelector.number",
		// DestinationRule
		"istio.networking.v1alpha3.DestinationRule.host",
		"istio.networking.v1alpha3.DestinationRule.subsets",
		"istio.networking.v1alpha3.Subset.name",
		"istio.networking.v1alpha3.Subset.labels",
		// ServiceEntry
		"istio.networking.v1alpha3.ServiceEntry.hosts",
		"istio.networking.v1alpha3.ServiceEntry.ports",
		"istio.networking.v1alpha3.ServiceEntry.resolution",
		"istio.networking.v1alpha3.ServiceEntry.endpoints",
		"istio.networking.v1alpha3.ServiceEntry.workload_selector",
		"istio.networking.v1alpha3.ServiceEntry.location",
		"istio.networking.v1alpha3.ServicePort.number",
		"istio.networking.v1alpha3.ServicePort.protocol",
		"istio.networking.v1alpha3.ServicePort.name",
		"istio.networking.v1alpha3.ServicePort.target_port",
		"istio.networking.v1alpha3.WorkloadSelector.labels",
		// WorkloadEntry (also ServiceEntry.endpoints[])
		"istio.networking.v1alpha3.WorkloadEntry.address",
		"istio.networking.v1alpha3.WorkloadEntry.ports",
		"istio.networking.v1alpha3.WorkloadEntry.labels",
		"istio.networking.v1alpha3.WorkloadEntry.weight":
		return true
	}
	return false
}
