// Package jwks fetches the JSON Web Key Sets that RequestAuthentication
// jwksUri values name, for the controller: the compiler does no I/O and
// proxies never fetch keys, so the controller fetches them (as istiod's
// JwksResolver does) and the compiler inlines them as local_jwks.
//
// Fetches are bounded by a timeout, bodies by a size limit, and results are
// cached by URI. A URI that was fetched once keeps its last good document
// when a refresh fails (Istio keeps the old key), so an identity provider's
// outage does not start rejecting tokens that verified before.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Defaults of a Resolver.
const (
	// DefaultTimeout bounds one fetch (Istio's JWTRule timeout default).
	DefaultTimeout = 5 * time.Second
	// DefaultRefresh is how old a cached document may be before it is
	// fetched again (istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL).
	DefaultRefresh = 20 * time.Minute
	// DefaultMaxBytes limits a JWKS document.
	DefaultMaxBytes = 1 << 20
)

// ErrInvalidJWKS is returned for a document that is not a JWKS with at
// least one key.
var ErrInvalidJWKS = errors.New("not a JWKS with at least one key")

// Resolver fetches and caches JWKS documents. Create it with New; it is
// safe for concurrent use.
type Resolver struct {
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
	now      func() time.Time

	mu    sync.Mutex // protects cache
	cache map[string]entry
}

// entry is the last good document of a URI.
type entry struct {
	body    []byte
	fetched time.Time
}

// Option configures a Resolver.
type Option func(*Resolver)

// WithHTTPClient sets the client fetches use. If nil, the default is a
// client with http.DefaultTransport's settings.
func WithHTTPClient(c *http.Client) Option {
	return func(r *Resolver) {
		if c != nil {
			r.client = c
		}
	}
}

// WithTimeout bounds each fetch. If d <= 0, the default is DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(r *Resolver) {
		if d > 0 {
			r.timeout = d
		}
	}
}

// WithMaxBytes limits a document's size. If n <= 0, the default is
// DefaultMaxBytes.
func WithMaxBytes(n int64) Option {
	return func(r *Resolver) {
		if n > 0 {
			r.maxBytes = n
		}
	}
}

// New returns a Resolver.
func New(opts ...Option) *Resolver {
	r := &Resolver{
		client:   &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		timeout:  DefaultTimeout,
		maxBytes: DefaultMaxBytes,
		now:      time.Now,
		cache:    map[string]entry{},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Resolve returns the JWKS document of each URI, and the error of each URI
// that has none. A cached document younger than maxAge is returned without
// a fetch (maxAge 0 always fetches); otherwise the URI is fetched, all
// concurrently, each under the resolver's timeout and ctx. A failed fetch
// of a URI that has a cached document returns that document.
func (r *Resolver) Resolve(ctx context.Context, uris []string, maxAge time.Duration) (map[string][]byte, map[string]error) {
	keys, errs := map[string][]byte{}, map[string]error{}
	var mu sync.Mutex // protects keys and errs
	var wg sync.WaitGroup
	now := r.now()
	for _, uri := range uris {
		r.mu.Lock()
		e, ok := r.cache[uri]
		r.mu.Unlock()
		if ok && maxAge > 0 && now.Sub(e.fetched) < maxAge {
			keys[uri] = e.body
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, err := r.fetch(ctx, uri)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				r.mu.Lock()
				r.cache[uri] = entry{body: body, fetched: r.now()}
				r.mu.Unlock()
				keys[uri] = body
			case ok:
				keys[uri] = e.body // keep the last good keys
			default:
				errs[uri] = err
			}
		}()
	}
	wg.Wait()
	return keys, errs
}

// openIDDiscoveryPath ends an issuer's OpenID discovery URL; the document
// there names the issuer's keys in jwks_uri.
const openIDDiscoveryPath = "/.well-known/openid-configuration"

// fetch GETs uri under the timeout and checks that it is a JWKS. An
// OpenID discovery URL is followed to the jwks_uri it names (istiod's
// resolveJwksURIUsingOpenID), within the same timeout.
func (r *Resolver) fetch(ctx context.Context, uri string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if strings.HasSuffix(uri, openIDDiscoveryPath) {
		body, err := r.get(ctx, uri)
		if err != nil {
			return nil, err
		}
		var meta struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &meta); err != nil || meta.JWKSURI == "" {
			return nil, fmt.Errorf("reading %s: no jwks_uri in the OpenID provider metadata", uri)
		}
		uri = meta.JWKSURI
	}
	body, err := r.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) == 0 {
		return nil, fmt.Errorf("reading %s: %w", uri, ErrInvalidJWKS)
	}
	return body, nil
}

// get GETs uri and returns its body, at most maxBytes.
func (r *Resolver) get(ctx context.Context, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetching %s: timed out after %s: %w", uri, r.timeout, ctx.Err())
		}
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: status %s", uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", uri, err)
	}
	if int64(len(body)) > r.maxBytes {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", uri, r.maxBytes)
	}
	return body, nil
}
