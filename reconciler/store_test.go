package reconciler

import (
	"strings"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/sources"
)

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	objs := []sources.Object{{APIVersion: "networking.istio.io/v1", Kind: "VirtualService", Name: "reviews", YAML: []byte("kind: VirtualService\n"), Origin: sources.Origin{File: "policy/r.yaml", Line: 1}}}
	if err := s.SaveLastGood(LastGood{Revision: "main@sha1:aaaa", Objects: objs, AppliedAt: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	ro := &admin.Rollout{Revision: "main@sha1:bbbb", Phase: admin.PhaseBaking, Updated: []string{"a"}}
	if err := s.SaveRollout(ro, objs); err != nil {
		t.Fatal(err)
	}
	if ro.ID != 1 {
		t.Errorf("first rollout ID = %d; want 1", ro.ID)
	}
	if err := s.SaveHold(&admin.Hold{Revision: "main@sha1:aaaa"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A restarted controller reads it all back.
	s, err = OpenStore(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lg, err := s.LastGood()
	if err != nil || lg == nil || lg.Revision != "main@sha1:aaaa" || len(lg.Objects) != 1 || lg.Objects[0].Origin.File != "policy/r.yaml" {
		t.Fatalf("LastGood = %+v, %v; want main@sha1:aaaa with its object", lg, err)
	}
	inf, err := s.InFlightRollout()
	if err != nil || inf == nil || inf.Rollout.ID != 1 || inf.Rollout.Phase != admin.PhaseBaking || len(inf.Objects) != 1 {
		t.Fatalf("InFlightRollout = %+v, %v; want rollout 1 Baking with objects", inf, err)
	}
	if h, err := s.Hold(); err != nil || h == nil || h.Revision != "main@sha1:aaaa" {
		t.Fatalf("Hold = %+v, %v", h, err)
	}

	// Finishing the rollout clears the in-flight record but keeps history.
	ro.Phase = admin.PhasePromoted
	if err := s.SaveRollout(ro, nil); err != nil {
		t.Fatal(err)
	}
	if inf, _ := s.InFlightRollout(); inf != nil {
		t.Errorf("InFlightRollout after Promoted = %+v; want nil", inf)
	}
	second := &admin.Rollout{Revision: "main@sha1:cccc", Phase: admin.PhaseRolledBack}
	if err := s.SaveRollout(second, nil); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(0)
	if err != nil || len(h) != 2 || h[0].ID != 2 || h[1].Phase != admin.PhasePromoted {
		t.Fatalf("History = %+v, %v; want [2 RolledBack, 1 Promoted]", h, err)
	}
	if err := s.SaveHold(nil); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Hold(); h != nil {
		t.Errorf("Hold after clearing = %+v; want nil", h)
	}
}

func TestStoreIsExclusive(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := OpenStore(dir, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "another controller") {
		t.Errorf("second OpenStore = %v; want an error naming another controller", err)
	}
}

func TestFindGood(t *testing.T) {
	s, err := OpenStore(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, rev := range []string{"main@sha1:1111aaaa", "main@sha1:2222bbbb", "main@sha1:2222cccc"} {
		if err := s.SaveLastGood(LastGood{Revision: rev, AppliedAt: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	// History: #1 promoted 1111aaaa, #2 refused 3333dddd, #3 promoted 2222bbbb.
	for _, ro := range []admin.Rollout{
		{Revision: "main@sha1:1111aaaa", Phase: admin.PhasePromoted},
		{Revision: "main@sha1:3333dddd", Phase: admin.PhaseRefused},
		{Revision: "main@sha1:2222bbbb", Phase: admin.PhasePromoted},
	} {
		if err := s.SaveRollout(&ro, nil); err != nil {
			t.Fatal(err)
		}
	}
	r := &Reconciler{cfg: Config{Store: s}}
	tests := []struct {
		to, current, want, wantMatched, wantErr string
	}{
		{to: "main@sha1:1111aaaa", want: "main@sha1:1111aaaa", wantMatched: "revision"},
		{to: "1111", want: "main@sha1:1111aaaa", wantMatched: "SHA prefix 1111"},
		{to: "sha1:2222bb", want: "main@sha1:2222bbbb"},
		{to: "2222", wantErr: "ambiguous"},
		{to: "9999", wantErr: "neither a history id nor a promoted revision"},
		{to: "3", want: "main@sha1:2222bbbb", wantMatched: "history #3"},
		{to: "#1", want: "main@sha1:1111aaaa", wantMatched: "history #1"},
		{to: "2", wantErr: "history #2 is main@sha1:3333dddd, which was never promoted (Refused)"},
		{to: "", current: "main@sha1:2222cccc", want: "main@sha1:2222bbbb"},
	}
	for _, tc := range tests {
		t.Run(tc.to, func(t *testing.T) {
			got, matched, err := r.findGood(tc.to, tc.current)
			if tc.wantMatched != "" && matched != tc.wantMatched {
				t.Errorf("matched %q; want %q", matched, tc.wantMatched)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Revision != tc.want {
				t.Errorf("got %+v, %v; want %s", got, err, tc.want)
			}
		})
	}
}
