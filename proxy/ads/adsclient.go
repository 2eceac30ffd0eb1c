package ads

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Client keeps an ADS stream to the controller open and feeds its
// responses to the applier. Its run goroutine is the applier's owner.
type Client struct {
	// Addr is the controller's xDS address (host:port); Creds its
	// transport credentials (nil: plaintext).
	Addr  string
	Creds credentials.TransportCredentials
	// Node is sent in every DiscoveryRequest.
	Node *corev3.Node
	// BackoffInitial and BackoffMax bound the delay before a new stream:
	// it doubles after each stream that ended (with ±20% jitter) and
	// starts over after one that delivered a response.
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// Log and Metrics receive the stream's events.
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// Handler validates and applies what the stream delivers.
	Handler Handler
	// Rejected counts consecutive NACKs of the same version per type.
	Rejected map[string]Rejection
}

// Rejection is a version NACKed count times in a row.
type Rejection struct {
	version string
	count   int
}

// Handler validates and applies what the stream delivers: the
// applier.
type Handler interface {
	// Handle builds and applies resp, returning the NACK's error when it
	// is rejected.
	Handle(ctx context.Context, resp *discoveryv3.DiscoveryResponse) error
	// AcceptedSet is the accepted resource set: its versions are ACKed on
	// a new stream and its names are the subscriptions.
	AcceptedSet() *config.ResourceSet
	// WarmingDeadline is when an update waiting for its references is
	// applied without them; false when none is waiting.
	WarmingDeadline() (time.Time, bool)
	// WarmingExpired applies the waiting update without what it lacks.
	WarmingExpired(ctx context.Context)
}

// NACKDelay returns how long to hold back the NACK of version. A control
// plane that answers every NACK by re-sending the same version (as
// go-control-plane's snapshot cache does) would otherwise spin both sides;
// the first NACK goes out at once, repeats back off exponentially up to
// BackoffMax.
func (c *Client) NACKDelay(typeURL, version string, nack error) time.Duration {
	if nack == nil {
		delete(c.Rejected, typeURL)
		return 0
	}
	r := c.Rejected[typeURL]
	if r.version != version {
		r = Rejection{version: version}
	}
	r.count++
	c.Rejected[typeURL] = r
	if r.count == 1 {
		return 0
	}
	d := c.BackoffInitial << min(r.count-1, 16)
	return min(d, c.BackoffMax)
}

// delayedNACK is a NACK held back by nackDelay.
type delayedNACK struct {
	err error
	due time.Time
}

// Run connects, serves one stream at a time and reconnects with jittered
// exponential backoff until ctx is done. The applied configuration keeps
// serving while the controller is unreachable.
func (c *Client) Run(ctx context.Context) error {
	creds := c.Creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("dialing controller %s: %w", c.Addr, err)
	}
	defer conn.Close()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	backoff := c.BackoffInitial
	for {
		delivered, err := c.stream(ctx, client)
		c.Metrics.XDSConnected.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		c.Metrics.XDSReconnects.Inc()
		if delivered {
			backoff = c.BackoffInitial
		}
		// ±20% jitter spreads a fleet's reconnects after a controller restart.
		wait := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		c.Log.Warn("ADS stream ended; reconnecting", "xds_addr", c.Addr, "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, c.BackoffMax)
	}
}

// recvResult is one Recv outcome.
type recvResult struct {
	resp *discoveryv3.DiscoveryResponse
	err  error
}

// stream runs one ADS stream until it breaks or ctx is done. It reports
// whether the stream delivered at least one response.
func (c *Client) stream(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient) (bool, error) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("opening ADS stream: %w", err)
	}
	s := &adsStream{st: st, node: c.Node, nonces: map[string]string{}, sent: map[string][]string{}}
	for _, t := range []string{config.ClusterType, config.ListenerType} {
		if err := s.send(t, c.Handler.AcceptedSet().Versions[t], nil, nil); err != nil {
			return false, err
		}
	}
	if err := s.syncSubscriptions(c.Handler.AcceptedSet()); err != nil {
		return false, err
	}

	recv := make(chan recvResult)
	wg.Go(func() {
		for {
			resp, err := st.Recv()
			select {
			case recv <- recvResult{resp: resp, err: err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})

	warm := time.NewTimer(time.Hour)
	warm.Stop()
	defer warm.Stop()
	nackTimer := time.NewTimer(time.Hour)
	nackTimer.Stop()
	defer nackTimer.Stop()
	delayed := map[string]delayedNACK{}
	delivered := false
	for {
		var warmC, nackC <-chan time.Time
		if dl, ok := c.Handler.WarmingDeadline(); ok {
			warm.Reset(time.Until(dl))
			warmC = warm.C
		}
		if len(delayed) > 0 {
			var first time.Time
			for _, d := range delayed {
				if first.IsZero() || d.due.Before(first) {
					first = d.due
				}
			}
			nackTimer.Reset(time.Until(first))
			nackC = nackTimer.C
		}
		select {
		case <-ctx.Done():
			return delivered, ctx.Err()
		case <-warmC:
			c.Handler.WarmingExpired(ctx)
		case <-nackC:
			now := time.Now()
			for typeURL, d := range delayed {
				if now.Before(d.due) {
					continue
				}
				delete(delayed, typeURL)
				if err := s.respond(typeURL, c.Handler.AcceptedSet(), d.err); err != nil {
					return delivered, err
				}
			}
		case r := <-recv:
			warm.Stop()
			nackTimer.Stop()
			if r.err != nil {
				return delivered, fmt.Errorf("receiving from ADS stream: %w", r.err)
			}
			if !delivered {
				delivered = true
				c.Metrics.XDSConnected.Set(1)
				c.Log.Info("ADS stream connected", "xds_addr", c.Addr)
			}
			typeURL := r.resp.GetTypeUrl()
			s.nonces[typeURL] = r.resp.GetNonce()
			nack := c.Handler.Handle(ctx, r.resp)
			delete(delayed, typeURL)
			if d := c.NACKDelay(typeURL, r.resp.GetVersionInfo(), nack); d > 0 {
				delayed[typeURL] = delayedNACK{err: nack, due: time.Now().Add(d)}
			} else if err := s.respond(typeURL, c.Handler.AcceptedSet(), nack); err != nil {
				return delivered, err
			}
			if err := s.syncSubscriptions(c.Handler.AcceptedSet()); err != nil {
				return delivered, err
			}
		}
	}
}

// adsStream is the request side of one stream; only the stream goroutine
// uses it.
type adsStream struct {
	st       discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node     *corev3.Node
	nodeSent bool
	// nonces is the last response nonce per type on this stream.
	nonces map[string]string
	// sent is the resource names last requested per named type.
	sent map[string][]string
}

func (s *adsStream) send(typeURL, version string, names []string, detail error) error {
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       typeURL,
		VersionInfo:   version,
		ResponseNonce: s.nonces[typeURL],
		ResourceNames: names,
	}
	if !s.nodeSent {
		req.Node = s.node
	}
	if detail != nil {
		req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: detail.Error()}
	}
	if err := s.st.Send(req); err != nil {
		return fmt.Errorf("sending %s request: %w", config.KindName(typeURL), err)
	}
	s.nodeSent = true
	return nil
}

// respond ACKs (nack == nil) or NACKs the last response of typeURL. Both
// carry the last accepted version; a NACK adds the error detail.
func (s *adsStream) respond(typeURL string, set *config.ResourceSet, nack error) error {
	var names []string
	if !config.WildcardType(typeURL) {
		names = s.sent[typeURL]
	}
	return s.send(typeURL, set.Versions[typeURL], names, nack)
}

// syncSubscriptions requests the EDS, RDS and SDS names the accepted
// clusters and listeners reference, when they differ from what was last
// requested.
func (s *adsStream) syncSubscriptions(set *config.ResourceSet) error {
	subs := set.Subscriptions()
	for _, typeURL := range config.NamedTypes {
		sub := struct {
			typeURL string
			names   []string
		}{typeURL, subs[typeURL]}
		prev, requested := s.sent[sub.typeURL]
		if slices.Equal(prev, sub.names) && (requested || len(sub.names) == 0) {
			continue
		}
		if !requested && len(sub.names) == 0 {
			continue // an empty first request would mean wildcard
		}
		if err := s.send(sub.typeURL, set.Versions[sub.typeURL], sub.names, nil); err != nil {
			return err
		}
		s.sent[sub.typeURL] = sub.names
	}
	return nil
}
