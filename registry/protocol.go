package registry

import "strings"

// Protocol is a port protocol as Istio names it.
type Protocol string

// Protocols Istio knows (istio.io/istio pkg/config/protocol).
const (
	ProtocolHTTP    Protocol = "HTTP"
	ProtocolHTTP2   Protocol = "HTTP2"
	ProtocolGRPC    Protocol = "GRPC"
	ProtocolGRPCWeb Protocol = "GRPC-Web"
	ProtocolHTTPS   Protocol = "HTTPS"
	ProtocolTLS     Protocol = "TLS"
	ProtocolTCP     Protocol = "TCP"
	ProtocolUDP     Protocol = "UDP"
	ProtocolMongo   Protocol = "Mongo"
	ProtocolRedis   Protocol = "Redis"
	ProtocolMySQL   Protocol = "MySQL"
	// ProtocolUnknown is a port whose name and appProtocol name no
	// protocol: Istio detects the protocol of each connection ("protocol
	// sniffing") and istioctl reports IST0118.
	ProtocolUnknown Protocol = "Unknown"
)

// wellKnownTCPPorts are the ports Istio treats as TCP when their name says
// nothing: SMTP, DNS, MySQL and MongoDB.
var wellKnownTCPPorts = [...]uint32{25, 53, 3306, 27017}

// SelectProtocol returns the protocol Istio selects for a Kubernetes
// Service port, exactly as Istio's kube conversion does: a UDP port is
// UDP; else appProtocol when set (with Kubernetes' kubernetes.io/h2c,
// kubernetes.io/ws and kubernetes.io/wss), else the port name; a name of
// the form "<protocol>" or "<protocol>-<suffix>" (any case; "grpc-web"
// before the first '-') names the protocol; anything else is
// ProtocolUnknown, except on the well-known TCP ports 25, 53, 3306 and
// 27017, which are TCP.
func SelectProtocol(port uint32, name, l4 string, appProtocol *string) Protocol {
	if strings.EqualFold(l4, "UDP") {
		return ProtocolUDP
	}
	if appProtocol != nil {
		name = *appProtocol
		switch name {
		case "kubernetes.io/h2c":
			return ProtocolHTTP2
		case "kubernetes.io/ws":
			return ProtocolHTTP
		case "kubernetes.io/wss":
			return ProtocolHTTPS
		}
	}
	const grpcWeb = "grpc-web"
	if len(name) >= len(grpcWeb) && strings.EqualFold(name[:len(grpcWeb)], grpcWeb) {
		return ProtocolGRPCWeb
	}
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[:i]
	}
	if p := ParseProtocol(name); p != ProtocolUnknown {
		return p
	}
	for _, n := range wellKnownTCPPorts {
		if port == n {
			return ProtocolTCP
		}
	}
	return ProtocolUnknown
}

// ParseProtocol reads a protocol name in any case ("http2", "GRPC");
// names Istio does not know are ProtocolUnknown.
func ParseProtocol(s string) Protocol {
	switch strings.ToLower(s) {
	case "http":
		return ProtocolHTTP
	case "http2":
		return ProtocolHTTP2
	case "grpc":
		return ProtocolGRPC
	case "grpc-web":
		return ProtocolGRPCWeb
	case "https":
		return ProtocolHTTPS
	case "tls":
		return ProtocolTLS
	case "tcp":
		return ProtocolTCP
	case "udp":
		return ProtocolUDP
	case "mongo":
		return ProtocolMongo
	case "redis":
		return ProtocolRedis
	case "mysql":
		return ProtocolMySQL
	}
	return ProtocolUnknown
}
