package registry

import "testing"

func TestSelectProtocol(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name        string
		port        uint32
		portName    string
		l4          string
		appProtocol *string
		want        Protocol
	}{
		{name: "http", port: 9080, portName: "http", want: ProtocolHTTP},
		{name: "http with suffix", port: 80, portName: "http-web", want: ProtocolHTTP},
		{name: "upper case", port: 80, portName: "HTTP2-api", want: ProtocolHTTP2},
		{name: "grpc", port: 7070, portName: "grpc", want: ProtocolGRPC},
		{name: "grpc-web before the dash", port: 7070, portName: "grpc-web-api", want: ProtocolGRPCWeb},
		{name: "tcp", port: 9000, portName: "tcp-db", want: ProtocolTCP},
		{name: "tls", port: 443, portName: "tls", want: ProtocolTLS},
		{name: "https", port: 443, portName: "https-admin", want: ProtocolHTTPS},
		{name: "mongo", port: 27017, portName: "mongo", want: ProtocolMongo},
		{name: "redis", port: 6379, portName: "redis", want: ProtocolRedis},
		{name: "mysql", port: 3306, portName: "mysql", want: ProtocolMySQL},
		{name: "unnamed is detected", port: 8080, portName: "", want: ProtocolUnknown},
		{name: "unknown prefix is detected", port: 8080, portName: "web", want: ProtocolUnknown},
		{name: "prefix must end at a dash", port: 8080, portName: "httpx", want: ProtocolUnknown},
		{name: "unnamed well-known MySQL port is TCP", port: 3306, portName: "", want: ProtocolTCP},
		{name: "unnamed DNS port is TCP", port: 53, portName: "dns", want: ProtocolTCP},
		{name: "UDP wins over the name", port: 53, portName: "http", l4: "UDP", want: ProtocolUDP},
		{name: "appProtocol wins over the name", port: 80, portName: "tcp", appProtocol: str("http"), want: ProtocolHTTP},
		{name: "appProtocol with suffix", port: 80, portName: "x", appProtocol: str("grpc-internal"), want: ProtocolGRPC},
		{name: "appProtocol h2c", port: 80, portName: "http", appProtocol: str("kubernetes.io/h2c"), want: ProtocolHTTP2},
		{name: "appProtocol ws", port: 80, appProtocol: str("kubernetes.io/ws"), want: ProtocolHTTP},
		{name: "appProtocol wss", port: 443, appProtocol: str("kubernetes.io/wss"), want: ProtocolHTTPS},
		{name: "unknown appProtocol is detected even with an http name", port: 80, portName: "http", appProtocol: str("example.com/custom"), want: ProtocolUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SelectProtocol(tt.port, tt.portName, tt.l4, tt.appProtocol); got != tt.want {
				t.Errorf("SelectProtocol(%d, %q, %q) = %q; want %q", tt.port, tt.portName, tt.l4, got, tt.want)
			}
		})
	}
}
