package proxy

import (
	"fmt"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/proxy/config"
)

func percent(n uint32, d typev3.FractionalPercent_DenominatorType) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: n, Denominator: d}
}

func abortFault(status uint32, p *typev3.FractionalPercent) *faultv3.HTTPFault {
	return &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: status}, Percentage: p}}
}

func delayFault(d time.Duration, p *typev3.FractionalPercent) *faultv3.HTTPFault {
	return &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{
		FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: dur(d)}, Percentage: p,
	}}
}

func TestFaultInjection(t *testing.T) {
	r := newRig(t, nodemeta.RoleSidecar)
	b := echo(t, "b", nil)
	const c = "outbound|80||f.default.svc.cluster.local"
	const hundred, tenK, million = typev3.FractionalPercent_HUNDRED, typev3.FractionalPercent_TEN_THOUSAND, typev3.FractionalPercent_MILLION
	grpcAbort := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14}, Percentage: percent(100, hundred)}}
	tests := []struct {
		name      string
		fault     *faultv3.HTTPFault // route-level typed_per_filter_config; nil: none
		disabled  bool               // route-level FilterConfig{disabled: true}
		n         int
		wantShare float64 // share of aborted requests
		wantCode  int     // abort status
		minDelay  time.Duration
		wantFlags string
		grpc      bool
	}{
		{name: "abort 100%", fault: abortFault(503, percent(100, hundred)), n: 20, wantShare: 1, wantCode: 503, wantFlags: "FI"},
		{name: "abort 0%", fault: abortFault(503, percent(0, hundred)), n: 20, wantShare: 0},
		{name: "abort unset percentage is 0%", fault: abortFault(503, nil), n: 20, wantShare: 0},
		{name: "abort 50% of HUNDRED", fault: abortFault(500, percent(50, hundred)), n: 400, wantShare: 0.5, wantCode: 500},
		{name: "abort 25% of TEN_THOUSAND", fault: abortFault(418, percent(2500, tenK)), n: 400, wantShare: 0.25, wantCode: 418},
		{name: "abort 75% of MILLION", fault: abortFault(429, percent(750000, million)), n: 400, wantShare: 0.75, wantCode: 429},
		{name: "delay 100%", fault: delayFault(100*time.Millisecond, percent(100, hundred)), n: 2, minDelay: 100 * time.Millisecond, wantFlags: "DI"},
		{name: "grpc abort", fault: grpcAbort, n: 5, wantShare: 1, wantCode: 200, grpc: true},
		{name: "listener default applies", n: 10, wantShare: 1, wantCode: 401},
		{name: "route disables the filter", disabled: true, n: 10, wantShare: 0},
	}
	var vhosts []*routev3.VirtualHost
	for i, tt := range tests {
		rt := toCluster(prefixMatch("/"), c)
		switch {
		case tt.fault != nil:
			rt.TypedPerFilterConfig = map[string]*anypb.Any{config.FaultFilterName: anyOf(t, tt.fault)}
		case tt.disabled:
			rt.TypedPerFilterConfig = map[string]*anypb.Any{config.FaultFilterName: anyOf(t, &routev3.FilterConfig{Disabled: true})}
		}
		vhosts = append(vhosts, vhost(fmt.Sprint(i), []string{fmt.Sprintf("f%d", i)}, rt))
	}
	listener := hcmListener(t, "outbound", r.out, "outbound", config.FaultFilterName, wellknown.Router)
	setHTTPFilterConfig(t, listener, config.FaultFilterName, anyOf(t, abortFault(401, percent(100, hundred))))
	r.push([]types.Resource{listener, routeConfig("outbound", vhosts...), staticCluster(t, c, "f.default.svc.cluster.local", []string{hostPort(b)})}...)

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aborted := 0
			for range tt.n {
				hdr := map[string]string{}
				if tt.grpc {
					hdr["Content-Type"] = "application/grpc"
				}
				start := time.Now()
				resp, body := r.get("GET", fmt.Sprintf("f%d", i), "/", hdr)
				if backendOf(resp) == "" {
					aborted++
					if resp.StatusCode != tt.wantCode {
						t.Fatalf("aborted with %d; want %d", resp.StatusCode, tt.wantCode)
					}
					if tt.grpc {
						if got := resp.Header.Get("Grpc-Status"); got != "14" {
							t.Errorf("grpc-status %q; want 14", got)
						}
					} else if body != "fault filter abort" {
						t.Errorf("abort body %q", body)
					}
				}
				if d := time.Since(start); d < tt.minDelay {
					t.Errorf("answered after %s; want a delay of at least %s", d, tt.minDelay)
				}
			}
			share := float64(aborted) / float64(tt.n)
			if share < tt.wantShare-0.08 || share > tt.wantShare+0.08 {
				t.Errorf("aborted share %.3f; want %.2f ± 0.08", share, tt.wantShare)
			}
		})
	}
	// Aborts report the route's destination, as Istio's stats do.
	for _, want := range [][]string{
		{`destination_service="f.default.svc.cluster.local"`, `response_code="503"`, `response_flags="FI"`},
		{`response_code="200"`, `response_flags="DI"`},
	} {
		if len(r.metricLines("istio_requests_total", want...)) == 0 {
			t.Errorf("/metrics lacks a series with %v", want)
		}
	}
}

// setHTTPFilterConfig sets the typed_config of a listener's HTTP filter.
func setHTTPFilterConfig(t testing.TB, l *listenerv3.Listener, name string, cfg *anypb.Any) {
	t.Helper()
	f := l.GetFilterChains()[0].GetFilters()[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	for _, hf := range hcm.GetHttpFilters() {
		if hf.GetName() == name {
			hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}
		}
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, hcm)}
}
