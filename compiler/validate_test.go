package compiler

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/sources"
)

// reviewsService declares reviews (one port, subsets v1/v2) for the cases below.
const reviewsService = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
`

func vs(http string) string {
	return reviewsService + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
` + http
}

func TestValidationCodes(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // "CODE field", sorted
	}{
		{"valid", vs("  - route: [{destination: {host: reviews, subset: v1}}]\n"), nil},
		{"invalid yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: [\n", []string{"GM0101 "}},
		{"wrong type", vs("  - route: [{destination: {host: reviews}, weight: heavy}]\n"), []string{"GM0102 spec.http[0].route[0].weight"}},
		{"bad enum", reviewsService + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [x], ports: [{number: 1, name: a}], resolution: STAITC}\n", []string{"GM0102 spec.resolution"}},
		{"oneof set twice", vs("  - match: [{uri: {exact: /a, prefix: /b}}]\n    route: [{destination: {host: reviews}}]\n"), []string{"GM0102 spec.http[0].match[0].uri.prefix"}},
		{"unsupported value not decoded", vs("  - retries: {attempts: 1, backoff: never}\n    route: [{destination: {host: reviews}}]\n"), []string{"GM0104 spec.http[0].retries.backoff"}},
		{"bad duration", vs("  - timeout: never\n    route: [{destination: {host: reviews}}]\n"), []string{"GM0102 spec.http[0].timeout"}},
		{"go duration", vs("  - timeout: 1m30s\n    route: [{destination: {host: reviews}}]\n"), nil},
		{"unknown field", vs("  - route: [{destination: {host: reviews, subet: v1}}]\n"), []string{"GM0103 spec.http[0].route[0].destination.subet"}},
		{"unsupported field", vs("  - mirrorPercent: 5\n    route: [{destination: {host: reviews}}]\n"), []string{"GM0104 spec.http[0].mirrorPercent"}},
		{"unsupported match field", vs("  - match: [{statPrefix: a}]\n    route: [{destination: {host: reviews}}]\n"), []string{"GM0104 spec.http[0].match[0].statPrefix"}},
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", []string{"GM0105 kind"}},
		{"gitmesh kind", "apiVersion: gitmesh.io/v1alpha1\nkind: Experiment\nmetadata: {name: x}\n", []string{"GM0106 kind"}},
		{"rollout policy", "apiVersion: gitmesh.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: x}\nspec: {waves: [{percent: 100}]}\n", nil},
		{"rollout policy invalid", "apiVersion: gitmesh.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: x}\nspec: {waves: [{percent: 100}, {percent: 50}]}\n", []string{"GM0120 spec.waves[1].percent"}},
		{"rollout policy unknown field", "apiVersion: gitmesh.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: x}\nspec: {waves: [{percent: 100, bak: 1s}]}\n", []string{"GM0103 spec.waves[0].bak"}},
		{"rollout policy wrong type", "apiVersion: gitmesh.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: x}\nspec: {waves: [{percent: all}]}\n", []string{"GM0102 spec.waves[0].percent"}},
		{"two rollout policies", "apiVersion: gitmesh.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: x}\n---\napiVersion: gitmesh.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: y}\n", []string{"GM0121 metadata.name"}},
		{"bad apiVersion", "apiVersion: networking.istio.io/v9\nkind: VirtualService\nmetadata: {name: x}\n", []string{"GM0107 apiVersion"}},
		{"security kind", "apiVersion: security.istio.io/v1\nkind: ExternalPolicy\nmetadata: {name: x}\n", []string{"GM0108 kind"}},
		{"missing destination", vs("  - route: [{weight: 100}]\n"), []string{"GM0110 spec.http[0].route[0].destination"}},
		{"missing name", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {namespace: x}\nspec: {address: 1.2.3.4}\n", []string{"GM0110 metadata.name"}},
		{"port zero", reviewsService + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [x], ports: [{number: 0, name: a}]}\n", []string{"GM0111 spec.ports[0].number"}},
		{"port too big", vs("  - route: [{destination: {host: reviews, port: {number: 65536}}}]\n"), []string{"GM0111 spec.http[0].route[0].destination.port.number"}},
		{"invalid host", vs("  - route: [{destination: {host: re_views}}]\n"), []string{"GM0112 spec.http[0].route[0].destination.host"}},
		{"static hostname", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [x], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: x.example.com}]}\n", []string{"GM0112 spec.endpoints[0].address"}},
		{"gateway", reviewsService + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [reviews], gateways: [ingress], http: [{route: [{destination: {host: reviews}}]}]}\n", []string{"GM0212 spec.gateways[0]"}},
		{"tls port", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [x], ports: [{number: 5432, name: tls, protocol: TLS}]}\n", []string{"GM0113 spec.ports[0].protocol"}},
		{"selector and endpoints", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [x], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 1.2.3.4}], workloadSelector: {labels: {a: b}}}\n", []string{"GM0114 spec.workloadSelector"}},
		{"duplicate subset", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x}\nspec: {host: x.example.com, subsets: [{name: a}, {name: a}]}\n", []string{"GM0115 spec.subsets[1].name", "GM0210 spec.host"}},
		{"unknown subset", vs("  - route: [{destination: {host: reviews, subset: v3}}]\n"), []string{"GM0201 spec.http[0].route[0].destination.subset"}},
		{"unknown host", vs("  - route: [{destination: {host: ratings}}]\n"), []string{"GM0202 spec.http[0].route[0].destination.host"}},
		{"single weight not 100", vs("  - route: [{destination: {host: reviews}, weight: 50}]\n"), nil},
		{"two without weights", vs("  - route: [{destination: {host: reviews, subset: v1}}, {destination: {host: reviews, subset: v2}}]\n"), []string{"GM0203 spec.http[0].route"}},
		{"weights 100 and 0", vs("  - route: [{destination: {host: reviews, subset: v1}, weight: 100}, {destination: {host: reviews, subset: v2}, weight: 0}]\n"), nil},
		{"negative weight", vs("  - route: [{destination: {host: reviews, subset: v1}, weight: 110}, {destination: {host: reviews, subset: v2}, weight: -10}]\n"), []string{"GM0203 spec.http[0].route[1].weight"}},
		{"unknown port", vs("  - route: [{destination: {host: reviews, port: {number: 80}}}]\n"), []string{"GM0204 spec.http[0].route[0].destination.port.number"}},
		{"duplicate object", reviewsService + reviewsService, []string{"GM0205 metadata.name", "GM0205 metadata.name"}},
		{"duplicate host", reviewsService + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [reviews.default.svc.cluster.local], ports: [{number: 80, name: http}]}\n", []string{"GM0206 spec.hosts[0]"}},
		{"two virtual services", vs("  - route: [{destination: {host: reviews}}]\n") + "\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: y}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n", []string{"GM0207 spec.hosts[0]"}},
		{"two destination rules", reviewsService + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: y}\nspec: {host: reviews}\n", []string{"GM0208 spec.host"}},
		{"virtual service host without service", reviewsService + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [ghost], http: [{route: [{destination: {host: reviews}}]}]}\n", []string{"GM0209 spec.hosts[0]"}},
		{"unselected workload entry", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm}\nspec: {address: 10.0.0.9, labels: {app: vm}}\n", []string{"GM0211 spec.labels"}},
		{"other namespace short name", reviewsService + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x, namespace: prod}\nspec: {hosts: [reviews.default.svc.cluster.local], http: [{route: [{destination: {host: reviews}}]}]}\n", []string{"GM0202 spec.http[0].route[0].destination.host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := splitObjects("case.yaml", []byte(tt.yaml))
			_, diags := Parse(objs)
			var got []string
			for _, d := range diags {
				got = append(got, d.Code+" "+d.Field)
				if d.Origin.File != "case.yaml" || d.Origin.Line <= 0 {
					t.Errorf("diagnostic without file:line: %s", d)
				}
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got diagnostics\n%s\nwant codes\n%s", diags, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDiagnosticString(t *testing.T) {
	d := Diagnostic{
		Code: CodeUnknownSubset, Severity: SeverityError, Kind: "VirtualService", Namespace: "default", Name: "reviews",
		Field:   "spec.http[0].route[0].destination.subset",
		Origin:  sources.Origin{File: "policy/reviews.yaml", Line: 12},
		Message: `subset "v3" is not defined in any DestinationRule for host reviews.default.svc.cluster.local`,
	}
	want := `policy/reviews.yaml:12: GM0201 error: VirtualService default/reviews: spec.http[0].route[0].destination.subset: subset "v3" is not defined in any DestinationRule for host reviews.default.svc.cluster.local`
	if got := d.String(); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if !(Diagnostics{d}).HasErrors() {
		t.Error("HasErrors() = false; want true")
	}
	d.Severity = SeverityWarning
	if (Diagnostics{d}).HasErrors() {
		t.Error("HasErrors() = true for a warning")
	}
}

func TestDiagnosticsSorted(t *testing.T) {
	data := vs("  - route: [{destination: {host: ratings}}]\n  - route: [{destination: {host: reviews, subset: v9}}]\n")
	a := splitObjects("b.yaml", []byte(data))
	b := splitObjects("a.yaml", []byte(data))
	_, diags := Parse(append(a, b...))
	for i := 1; i < len(diags); i++ {
		p, q := diags[i-1], diags[i]
		if p.Origin.File > q.Origin.File || (p.Origin.File == q.Origin.File && p.Origin.Line > q.Origin.Line) {
			t.Errorf("not sorted:\n%s", diags)
		}
	}
	if len(diags) == 0 || diags[0].Origin.File != "a.yaml" {
		t.Errorf("got\n%s", diags)
	}
}

func TestWithDefaultNamespace(t *testing.T) {
	p, diags := Parse(splitObjects("x.yaml", []byte(reviewsService)), WithDefaultNamespace("prod"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := p.ServiceEntries[0].Namespace; got != "prod" {
		t.Errorf("namespace = %q; want prod", got)
	}
	if p.byHost["reviews.prod.svc.cluster.local"] == nil {
		t.Errorf("reviews not resolved in prod: %v", p.byHost)
	}
}

func TestPendingKeepsGitmeshKinds(t *testing.T) {
	p, _ := Parse(splitObjects("x.yaml", []byte("apiVersion: gitmesh.io/v1alpha1\nkind: Experiment\nmetadata: {name: r}\nspec: {}\n")))
	if len(p.Pending) != 1 || p.Pending[0].Kind != "Experiment" {
		t.Errorf("Pending = %v", p.Pending)
	}
}

func TestRolloutPolicy(t *testing.T) {
	var nilPolicy *Policy
	if nilPolicy.RolloutPolicy() != nil {
		t.Error("nil policy has a RolloutPolicy")
	}
	p, diags := Parse(splitObjects("x.yaml", []byte("apiVersion: gitmesh.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: r, namespace: ops, labels: {team: a}}\nspec:\n  waves:\n  - {percent: 10, bake: 8s}\n  - {selector: {matchLabels: {zone: b}}}\n")))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	rp := p.RolloutPolicy()
	if rp == nil || len(rp.Spec.Waves) != 2 || rp.Spec.Waves[0].Bake.Seconds() != 8 || rp.Metadata.Namespace != "ops" || rp.Metadata.Labels["team"] != "a" {
		t.Errorf("RolloutPolicy() = %+v", rp)
	}
	if p, _ := Parse(nil); p.RolloutPolicy() != nil {
		t.Error("a revision without RolloutPolicy has one")
	}
}

func ExampleDiagnostics_String() {
	data := vs("  - route: [{destination: {host: reviews, subset: v3}}]\n")
	_, diags := Parse(splitObjects("policy/reviews.yaml", []byte(data)))
	fmt.Print(diags)
	// Output:
	// policy/reviews.yaml:23: GM0201 error: VirtualService default/reviews: spec.http[0].route[0].destination.subset: subset "v3" is not defined in any DestinationRule for host reviews.default.svc.cluster.local
}
