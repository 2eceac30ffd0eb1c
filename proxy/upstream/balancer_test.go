package upstream_test

import (
	"testing"

	"github.com/gitmesh/gitmesh/proxy/upstream"
)

func TestEndpointSetWeights(t *testing.T) {
	a, b, c := &upstream.Endpoint{Addr: "a"}, &upstream.Endpoint{Addr: "b"}, &upstream.Endpoint{Addr: "c"}
	tests := []struct {
		name    string
		eps     []*upstream.Endpoint
		weights []uint32
		picks   int
		want    map[string]int
	}{
		{"equal weights are round-robin", []*upstream.Endpoint{a, b, c}, []uint32{1, 1, 1}, 9, map[string]int{"a": 3, "b": 3, "c": 3}},
		{"weights honoured exactly per cycle", []*upstream.Endpoint{a, b}, []uint32{1, 3}, 400, map[string]int{"a": 100, "b": 300}},
		{"gcd reduced", []*upstream.Endpoint{a, b}, []uint32{20, 80}, 5, map[string]int{"a": 1, "b": 4}},
		{"huge weights scaled", []*upstream.Endpoint{a, b}, []uint32{1_000_000, 3_000_000}, 4096, map[string]int{"a": 1024, "b": 3072}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := upstream.NewEndpointSet(tt.eps, tt.weights)
			got := map[string]int{}
			for range tt.picks {
				got[s.Pick(nil).Addr]++
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("picks = %v; want %v", got, tt.want)
					break
				}
			}
		})
	}
	if upstream.NewEndpointSet(nil, nil).Pick(nil) != nil {
		t.Error("empty set picked an endpoint")
	}
	// Smooth: with weights 1:3 the light endpoint is never picked twice in a row.
	s := upstream.NewEndpointSet([]*upstream.Endpoint{a, b}, []uint32{1, 3})
	prev := ""
	for range 40 {
		e := s.Pick(nil).Addr
		if e == "a" && prev == "a" {
			t.Fatal("schedule not interleaved")
		}
		prev = e
	}
}
