package registry

import (
	"cmp"
	"slices"
)

// Static is an immutable Registry built once from a list of services and
// workloads.
type Static struct {
	services  []*Service
	workloads []*Workload
}

var _ Registry = (*Static)(nil)

// NewStatic returns a Registry of services and workloads, sorted as
// Registry requires. It keeps the pointers: callers must not change them
// afterwards.
func NewStatic(services []*Service, workloads []*Workload) *Static {
	s := &Static{services: slices.Clone(services), workloads: slices.Clone(workloads)}
	slices.SortStableFunc(s.services, func(a, b *Service) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.Namespace, b.Namespace))
	})
	slices.SortStableFunc(s.workloads, func(a, b *Workload) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return s
}

// Services implements Registry.
func (s *Static) Services() []*Service { return s.services }

// Workloads implements Registry.
func (s *Static) Workloads() []*Workload { return s.workloads }

// SelectedWorkloads returns the workloads of reg in svc's namespace that
// svc's selector picks (none when svc has no selector).
func SelectedWorkloads(reg Registry, svc *Service) []*Workload {
	if reg == nil || svc.Selector == nil {
		return nil
	}
	var out []*Workload
	for _, w := range reg.Workloads() {
		if w.Namespace == svc.Namespace && Selects(svc.Selector, w.Labels) {
			out = append(out, w)
		}
	}
	return out
}
