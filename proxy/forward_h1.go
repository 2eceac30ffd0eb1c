package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// forwardH1 is the forwarding path of the common request: one the
// cluster's h1Client can send (no body, an idempotent method, no
// upgrade), on a route without mirrors, with a clean query. It does what
// httputil.ReverseProxy does for such a request (hop-by-hop headers,
// x-forwarded-*, informational responses, trailers, flushing of streamed
// bodies, errors) without cloning the request and its headers, without
// request-scoped context values and with one pooled copy buffer: the
// downstream request's headers become the upstream request's, since the
// handler does not read them after forwarding.
//
// It reports whether it handled the request; when it did not, forward
// uses the pool's ReverseProxy.
func (p *Proxy) forwardH1(ctx context.Context, w http.ResponseWriter, r *http.Request, rs *requestState) bool {
	pool := poolOf(rs.cluster)
	if pool.h1 == nil || len(rs.route.Mirrors) > 0 || !h1Eligible(r) || queryNeedsCleaning(r.URL.RawQuery) {
		return false
	}
	if _, ok := r.Header["Connection"]; ok {
		// A Connection header may name Upgrade or other hop-by-hop
		// headers; leave those to the ReverseProxy.
		return false
	}
	out := r.WithContext(ctx)
	u := *r.URL
	out.URL = &u
	out.Close = false
	out.RequestURI = ""
	h := out.Header
	te := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	priorXFF := h["X-Forwarded-For"]
	removeHopByHop(h)
	if te {
		h["Te"] = []string{"trailers"}
	}
	delete(h, "Forwarded")
	delete(h, "X-Forwarded-For")
	delete(h, "X-Forwarded-Host")
	delete(h, "X-Forwarded-Proto")
	rewriteOut(r, out, rs, priorXFF)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // no default User-Agent
	}

	rs.downstream = w
	resp, err := pool.attempts.roundTrip(out, rs)
	rs.downstream = nil
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body.Close()
		err = errors.New("upstream switched protocols without an upgrade request")
	}
	if err != nil {
		p.upstreamError(w, r, rs, err)
		return true
	}
	defer resp.Body.Close()
	removeHopByHop(resp.Header)
	rs.upstreamResponse(resp)
	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = append(dst[k], vv...)
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		dst.Add("Trailer", strings.Join(names, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	if err := p.copyBody(w, resp); err != nil {
		// The response is under way: all that is left is to abort the
		// downstream exchange, as the ReverseProxy does.
		panic(http.ErrAbortHandler)
	}
	resp.Body.Close()
	if len(resp.Trailer) > 0 {
		// Force chunking so that net/http does not compute a
		// Content-Length for a short body and the trailers can follow.
		http.NewResponseController(w).Flush()
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			dst[k] = append(dst[k], vv...)
		}
		return true
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			dst.Add(http.TrailerPrefix+k, v)
		}
	}
	return true
}

// hopHeaders are the hop-by-hop headers httputil.ReverseProxy removes.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop removes the hop-by-hop headers of a response: those its
// Connection header names and the standard ones.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// queryNeedsCleaning reports whether httputil.ReverseProxy would re-encode
// a raw query (it drops unparsable parameters: a ';' or a bad escape).
func queryNeedsCleaning(q string) bool {
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return true
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return true
			}
			i += 3
		default:
			i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// forwardInformational passes an upstream 1xx response to the client, as
// httputil.ReverseProxy does.
func forwardInformational(w http.ResponseWriter, code int, header http.Header) {
	h := w.Header()
	for k, vv := range header {
		h[k] = append(h[k], vv...)
	}
	w.WriteHeader(code)
	clear(h)
}

// copyBody copies an upstream response body to the client with a pooled
// buffer, flushing after every write when the body is streamed (unknown
// length, or server-sent events), as httputil.ReverseProxy does.
func (p *Proxy) copyBody(w http.ResponseWriter, resp *http.Response) error {
	flush := resp.ContentLength == -1 || isEventStream(resp.Header.Get("Content-Type"))
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	buf := p.buffers.Get()
	defer p.buffers.Put(buf)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flush {
				rc.Flush()
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return rerr
		}
	}
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	const es = "text/event-stream"
	return len(ct) >= len(es) && strings.EqualFold(ct[:len(es)], es) &&
		(len(ct) == len(es) || ct[len(es)] == ';' || ct[len(es)] == ' ')
}
