package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gitmesh/gitmesh/internal/redact"
)

// Querier runs a PromQL instant query and returns its single value.
// Implementations must be safe for concurrent use: Check runs the queries
// of one analysis in parallel.
type Querier interface {
	// Query evaluates promql at the server at address (a base URL such as
	// http://127.0.0.1:9090) now, and returns the result as one number.
	Query(ctx context.Context, address, promql string) (float64, error)
}

var _ Querier = Prometheus{}

// Prometheus queries a Prometheus server over its HTTP API
// (GET <address>/api/v1/query).
type Prometheus struct {
	// Client makes the requests. If nil, http.DefaultClient is used; the
	// ctx passed to Query bounds each query.
	Client *http.Client
}

// maxQueryResponseBytes caps a query response; a single-sample answer is
// a few hundred bytes.
const maxQueryResponseBytes = 4 << 20

// ErrNotSingleValue is returned (wrapped) by Prometheus.Query when a query
// yields no sample, several, or a range vector or string: the check needs
// exactly one number, so aggregate the query (sum, max, ...).
var ErrNotSingleValue = errors.New("query result is not a single value")

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// Query implements Querier. A scalar result or an instant vector of
// exactly one sample is returned as its value; an empty vector, several
// samples or another result type is an ErrNotSingleValue; a PromQL error
// carries Prometheus's error type and message.
func (p Prometheus) Query(ctx context.Context, address, promql string) (float64, error) {
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	u, err := url.Parse(address)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return 0, fmt.Errorf("querying prometheus: address %q is not a URL like http://127.0.0.1:9090", redact.URL(address))
	}
	u = u.JoinPath("api", "v1", "query")
	u.RawQuery = url.Values{"query": {promql}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("querying prometheus %s: %w", redact.URL(address), err)
	}
	req.Header.Set("Accept", "application/json")
	shown := redact.URL(address)
	resp, err := client.Do(req)
	if err != nil {
		// net/http's *url.Error quotes the whole URL, user name included.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("querying prometheus %s: %w", shown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxQueryResponseBytes))
	if err != nil {
		return 0, fmt.Errorf("querying prometheus %s: reading response: %w", shown, err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("querying prometheus %s: %s", shown, resp.Status)
		}
		return 0, fmt.Errorf("querying prometheus %s: decoding response: %w", shown, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("querying prometheus %s: %s (%s): %s", shown, r.ErrorType, resp.Status, r.Error)
	}
	v, err := singleValue(r.Data.ResultType, r.Data.Result)
	if err != nil {
		return 0, fmt.Errorf("querying prometheus %s: %w", shown, err)
	}
	return v, nil
}

// singleValue decodes a scalar or a one-sample vector result.
func singleValue(resultType string, result json.RawMessage) (float64, error) {
	var pair []json.RawMessage // [unix time, "value"]
	switch resultType {
	case "scalar":
		if err := json.Unmarshal(result, &pair); err != nil {
			return 0, fmt.Errorf("decoding scalar: %w", err)
		}
	case "vector":
		var samples []struct {
			Metric map[string]string `json:"metric"`
			Value  []json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(result, &samples); err != nil {
			return 0, fmt.Errorf("decoding vector: %w", err)
		}
		switch len(samples) {
		case 0:
			return 0, fmt.Errorf("%w: empty vector (no series matched)", ErrNotSingleValue)
		case 1:
			pair = samples[0].Value
		default:
			return 0, fmt.Errorf("%w: %d samples, e.g. %v and %v", ErrNotSingleValue, len(samples), samples[0].Metric, samples[1].Metric)
		}
	default:
		return 0, fmt.Errorf("%w: result type %q", ErrNotSingleValue, resultType)
	}
	if len(pair) != 2 {
		return 0, fmt.Errorf("decoding sample: want [time, value], got %d elements", len(pair))
	}
	var s string
	if err := json.Unmarshal(pair[1], &s); err != nil {
		return 0, fmt.Errorf("decoding sample value: %w", err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("decoding sample value: %w", err)
	}
	return v, nil
}
