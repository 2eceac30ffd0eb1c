package xds

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// minSharedBody is the smallest response body sharedCodec sends without
// copying; smaller ones are cheaper to copy than to track.
const minSharedBody = 4 << 10

// sharedCodec is the server's gRPC codec: protobuf, except that a
// discovery response whose resources travel as a shared body (its unknown
// fields, see encoded.go) is sent as two buffers, the response's own
// fields marshalled for this stream and the body as it is, so that a
// snapshot sent to a thousand streams is in memory once rather than once
// per stream until each has been written out.
type sharedCodec struct {
	base encoding.CodecV2
}

var _ encoding.CodecV2 = sharedCodec{}

func newSharedCodec() sharedCodec {
	return sharedCodec{base: encoding.GetCodecV2(grpcproto.Name)}
}

// Marshal marshals v, sharing the body of a discovery response.
func (c sharedCodec) Marshal(v any) (mem.BufferSlice, error) {
	var head proto.Message
	var body []byte
	switch m := v.(type) {
	case *discoveryv3.DiscoveryResponse:
		body = m.ProtoReflect().GetUnknown()
		head = &discoveryv3.DiscoveryResponse{VersionInfo: m.VersionInfo, Resources: m.Resources, Canary: m.Canary,
			TypeUrl: m.TypeUrl, Nonce: m.Nonce, ControlPlane: m.ControlPlane, ResourceErrors: m.ResourceErrors}
	case *discoveryv3.DeltaDiscoveryResponse:
		body = m.ProtoReflect().GetUnknown()
		head = &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: m.SystemVersionInfo, Resources: m.Resources,
			TypeUrl: m.TypeUrl, RemovedResources: m.RemovedResources, RemovedResourceNames: m.RemovedResourceNames,
			Nonce: m.Nonce, ControlPlane: m.ControlPlane, ResourceErrors: m.ResourceErrors}
	}
	if len(body) < minSharedBody {
		return c.base.Marshal(v)
	}
	b, err := proto.Marshal(head)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b), mem.SliceBuffer(body)}, nil
}

// Unmarshal is protobuf's.
func (c sharedCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

// Name is protobuf's, so clients need nothing special.
func (c sharedCodec) Name() string { return c.base.Name() }
