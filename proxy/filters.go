package proxy

import (
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"io"
	"net/http"
	"strconv"
	"time"
)

// serveCORS runs the CORS filter for a request that carries an Origin: it
// answers an allowed preflight itself (200 with the Access-Control-Allow-*
// headers) and reports true; for other allowed requests it records the
// origin so the response gets Access-Control-Allow-Origin.
func serveCORS(c *routing.CORSPolicy, w http.ResponseWriter, r *http.Request, rs *requestState) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || (c.Enabled != nil && !c.Enabled.Roll()) {
		return false
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !c.OriginAllowed(origin) {
		if preflight && c.ForwardNotMatching != nil && !*c.ForwardNotMatching {
			rs.code = http.StatusOK
			w.WriteHeader(http.StatusOK)
			return true
		}
		return false
	}
	if !preflight {
		rs.corsOrigin = origin
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if c.AllowCredentials != nil && *c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.AllowMethods != "" {
		h.Set("Access-Control-Allow-Methods", c.AllowMethods)
	}
	if c.AllowHeaders != "" {
		h.Set("Access-Control-Allow-Headers", c.AllowHeaders)
	}
	if c.MaxAge != "" {
		h.Set("Access-Control-Max-Age", c.MaxAge)
	}
	if c.AllowPrivateNetwork != nil && *c.AllowPrivateNetwork && r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	rs.code = http.StatusOK
	w.WriteHeader(http.StatusOK)
	return true
}

// injectFault applies the fault to one request: it sleeps for a delay (flag DI)
// and answers an abort itself (flag FI). It reports whether the request
// was answered (aborted, or the client went away during the delay).
func injectFault(fc *routing.FaultConfig, w http.ResponseWriter, r *http.Request, rs *requestState) bool {
	if fc.HasDelay && fc.DelayShare.Roll() {
		rs.flags |= metrics.FlagDelayInjected
		t := time.NewTimer(fc.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			rs.code, rs.flags = 0, rs.flags|metrics.FlagDownstreamClosed
			return true
		}
	}
	if fc.HasAbort && fc.AbortShare.Roll() {
		rs.flags |= metrics.FlagFaultInjected
		rs.code = fc.AbortStatus
		h := w.Header()
		if fc.AbortGRPC {
			h.Set("Content-Type", "application/grpc")
			h.Set("Grpc-Status", strconv.FormatUint(uint64(fc.GRPCStatus), 10))
			h.Set("Grpc-Message", fc.AbortBody)
			w.WriteHeader(http.StatusOK)
			return true
		}
		h.Set("Content-Type", "text/plain")
		w.WriteHeader(fc.AbortStatus)
		io.WriteString(w, fc.AbortBody)
		return true
	}
	return false
}

// serveRedirect answers the redirect a.
func serveRedirect(a *routing.RedirectAction, w http.ResponseWriter, r *http.Request, rs *requestState) {
	var m *routing.RouteMatch
	if rs.route != nil {
		m = &rs.route.Match
	}
	w.Header().Set("Location", a.Location(r, m))
	rs.code = a.Code
	rs.finishHeaders(w.Header())
	w.WriteHeader(a.Code)
}

// serveDirect answers the direct response d.
func serveDirect(d *routing.DirectResponse, w http.ResponseWriter, rs *requestState) {
	rs.code = d.Status
	h := w.Header()
	if d.Body != "" {
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", strconv.Itoa(len(d.Body)))
	}
	rs.finishHeaders(h)
	w.WriteHeader(d.Status)
	io.WriteString(w, d.Body)
}
