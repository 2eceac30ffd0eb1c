// Package web serves the controller's read-only web view: a page at /
// (HTML, CSS and JavaScript embedded in the binary, no CDN) that shows the
// fleet, the rollout in flight with its waves and gate readings, the
// history, the diagnostics of a refused revision and a graph of the
// mesh's traffic, kept live over server-sent events:
//
//	GET /                the page
//	GET /ui/...          its script and style sheet
//	GET /api/v1/events   text/event-stream: vocab, status, history and graph events
//	GET /api/v1/graph    the traffic graph (admin.Graph) from a scrape of the fleet
//
// The page and its assets hold no data and are served to anyone; the two
// API paths are admin API reads and obey --admin-auth like the others
// (the controller wraps the handler). docs/web.md is the user's guide.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/xds"
)

// assets are the page's files, written by hand: no build step.
//
//go:embed assets
var assets embed.FS

// Source is what the page shows of the controller. *reconciler.Reconciler
// implements it; both methods must be safe for concurrent use.
type Source interface {
	Status() admin.Status
	History(limit int) ([]admin.Rollout, error)
}

// Fleet lists the connected proxies whose metrics the graph scrapes.
// *xds.Server implements it.
type Fleet interface {
	Nodes() []xds.NodeStatus
}

var _ Fleet = (*xds.Server)(nil)

// Defaults of the options.
const (
	// DefaultPollInterval is how often the status is read while a page
	// is open (an in-process call; events are sent only on change).
	DefaultPollInterval = 250 * time.Millisecond
	// DefaultGraphInterval is how often the fleet is scraped for the
	// graph while a page is open.
	DefaultGraphInterval = 5 * time.Second
	// DefaultGraphWindow is the span rates are computed over.
	DefaultGraphWindow = 30 * time.Second
	// DefaultKeepAlive is how often an idle event stream carries a
	// comment, so that proxies and the page's watchdog see it alive.
	DefaultKeepAlive = 15 * time.Second
	// HistoryLimit is how many past rollouts the page lists.
	HistoryLimit = 20
)

// Server serves the web view. Create it with New, serve Handler, and run
// Run for as long as it is served: Run feeds the open pages and ends their
// streams when it returns.
type Server struct {
	src           Source
	fleet         Fleet
	client        *http.Client
	log           *slog.Logger
	pollInterval  time.Duration
	graphInterval time.Duration
	keepAlive     time.Duration
	coldGap       time.Duration

	hub *hub

	// graphMu protects graphWin and serializes scrapes of the fleet.
	graphMu  sync.Mutex
	graphWin window
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger. If not set, logs are discarded.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithHTTPClient sets the client that scrapes the proxies. Each scrape has
// its own deadline. Default: a client without a Timeout.
func WithHTTPClient(c *http.Client) Option { return func(s *Server) { s.client = c } }

// WithPollInterval sets how often the status is read while a page is open.
// Default DefaultPollInterval.
func WithPollInterval(d time.Duration) Option { return func(s *Server) { s.pollInterval = d } }

// WithGraphInterval sets how often the fleet is scraped while a page is
// open. Default DefaultGraphInterval.
func WithGraphInterval(d time.Duration) Option { return func(s *Server) { s.graphInterval = d } }

// WithGraphWindow sets the span the graph's rates are computed over.
// Default DefaultGraphWindow.
func WithGraphWindow(d time.Duration) Option { return func(s *Server) { s.graphWin.span = d } }

// WithKeepAlive sets how often an idle event stream carries a comment.
// Default DefaultKeepAlive.
func WithKeepAlive(d time.Duration) Option { return func(s *Server) { s.keepAlive = d } }

// New returns a Server showing src, whose graph scrapes fleet.
func New(src Source, fleet Fleet, opts ...Option) *Server {
	s := &Server{
		src: src, fleet: fleet, client: &http.Client{}, log: slog.New(slog.DiscardHandler),
		pollInterval: DefaultPollInterval, graphInterval: DefaultGraphInterval, keepAlive: DefaultKeepAlive,
		coldGap: time.Second, graphWin: window{span: DefaultGraphWindow}, hub: newHub(),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// IsPublic reports whether path is one of the page's own files, which hold
// no data and are served without the admin token even with --admin-auth
// all (the page then asks for the token).
func IsPublic(path string) bool {
	return path == "/" || strings.HasPrefix(path, "/ui/")
}

// Handler serves the page, its assets, the event stream and the graph.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		pageHeaders(w)
		http.ServeFileFS(w, req, static, "index.html")
	})
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "" || req.URL.Path == "index.html" || strings.HasSuffix(req.URL.Path, "/") {
			http.NotFound(w, req)
			return
		}
		pageHeaders(w)
		files.ServeHTTP(w, req)
	})))
	mux.HandleFunc("GET /api/v1/events", s.serveEvents)
	mux.HandleFunc("GET /api/v1/graph", func(w http.ResponseWriter, req *http.Request) {
		g := s.sampleGraph(req.Context(), time.Second)
		admin.WriteJSON(w, http.StatusOK, g)
	})
	return mux
}

// contentSecurityPolicy lets the page load only its own script and style
// and talk only to its origin: with --admin-auth all the token sits in the
// tab's sessionStorage, so nothing else may run there. The script builds
// the DOM with textContent, never HTML strings.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// Run feeds the open pages until ctx is done: it reads the status every
// poll interval and scrapes the fleet every graph interval, only while a
// page is open, and sends what changed. When it returns, open event
// streams end and new ones are refused.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.pollStatus(ctx) })
	wg.Go(func() { s.pollGraph(ctx) })
	wg.Wait()
	s.hub.stop()
	return nil
}

// pollStatus publishes the status, and the history when the status
// changed, while some page is open.
func (s *Server) pollStatus(ctx context.Context) {
	s.whileWatched(ctx, s.pollInterval, s.hub.wakeStatus, func() {
		st := s.src.Status()
		if !s.hub.publish(eventStatus, mustJSON(newStatusView(st))) {
			return
		}
		h, err := s.src.History(HistoryLimit)
		if err != nil {
			s.log.Warn("reading history for the web view", "error", err)
			return
		}
		s.hub.publish(eventHistory, mustJSON(h))
	})
}

// pollGraph publishes the graph after each scrape while some page is open.
func (s *Server) pollGraph(ctx context.Context) {
	s.whileWatched(ctx, s.graphInterval, s.hub.wakeGraph, func() {
		s.hub.publish(eventGraph, mustJSON(s.sampleGraph(ctx, s.graphInterval/2)))
	})
}

// whileWatched calls f every interval and on each wake, while some page
// is open, until ctx is done.
func (s *Server) whileWatched(ctx context.Context, every time.Duration, wake <-chan struct{}, f func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		if s.hub.watched() {
			f()
		}
	}
}

// sampleGraph scrapes the fleet unless the newest scrape is younger than
// fresh, and returns the graph of the window. When the window holds a
// single scrape (the first after a quiet spell), it scrapes again after
// coldGap, so that the answer has rates.
func (s *Server) sampleGraph(ctx context.Context, fresh time.Duration) admin.Graph {
	s.graphMu.Lock()
	defer s.graphMu.Unlock()
	if time.Since(s.graphWin.last()) >= fresh {
		s.scrapeInto(ctx)
	}
	if len(s.graphWin.scrapes) < 2 {
		t := time.NewTimer(s.coldGap)
		select {
		case <-ctx.Done():
		case <-t.C:
			s.scrapeInto(ctx)
		}
		t.Stop()
	}
	return s.graphWin.graph()
}

// scrapeInto adds a scrape of the fleet to the window (graphMu held),
// bounded by the graph interval, at most 5s.
func (s *Server) scrapeInto(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, min(s.graphInterval, 5*time.Second))
	defer cancel()
	sc := scrapeFleet(ctx, s.client, s.fleet.Nodes())
	if len(sc.errs) > 0 {
		s.log.Debug("scraping proxies for the graph", "errors", len(sc.errs), "first", sc.errs[0])
	}
	s.graphWin.add(sc)
}

// mustJSON encodes v, whose types always encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("web: encoding " + err.Error())
	}
	return b
}
