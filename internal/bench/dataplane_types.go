package bench

// DataPlaneResult is the data-plane part's figures.
type DataPlaneResult struct {
	// Saturation is each target and protocol driven as hard as wrk (HTTP/1.1)
	// or h2load (h2c) can with 1 thread and 16 connections.
	Saturation []SatResult `json:"saturation"`
	// FixedRate is the open-loop run's request rate, Fixed its results.
	FixedRate int           `json:"fixed_rate"`
	Fixed     []FixedResult `json:"fixed"`
	// Seconds is each run's duration.
	Seconds int `json:"seconds"`
}

// find returns the saturation result of target and proto, or nil.
func (d *DataPlaneResult) find(target, proto string) *SatResult {
	for i := range d.Saturation {
		if d.Saturation[i].Target == target && d.Saturation[i].Proto == proto {
			return &d.Saturation[i]
		}
	}
	return nil
}

// SatResult is one saturation run.
type SatResult struct {
	Target string  `json:"target"`
	Proto  string  `json:"proto"`
	Tool   string  `json:"tool"`
	RPS    float64 `json:"rps"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	// CPUUSPerReq is the CPU the target's proxy processes used per request
	// (all of them: two for two sidecars), in microseconds.
	CPUUSPerReq float64 `json:"cpu_us_per_req"`
	Errors      int     `json:"errors"`
}

// FixedResult is one open-loop run at a fixed rate.
type FixedResult struct {
	Target string  `json:"target"`
	Proto  string  `json:"proto"`
	RPS    float64 `json:"rps"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	// AddedP50MS and AddedP99MS are over the direct run of the same
	// protocol.
	AddedP50MS float64 `json:"added_p50_ms"`
	AddedP99MS float64 `json:"added_p99_ms"`
	// VCPU is the target's proxy processes' CPU in cores (CPU seconds per
	// second), RSSMB their resident memory at the end, summed over Procs
	// processes.
	VCPU  float64 `json:"vcpu"`
	RSSMB float64 `json:"rss_mb"`
	// AnonMB is the anonymous part of RSSMB (RssAnon: heap, stacks,
	// written data); the rest is file-backed: pages of the binary, shared
	// by every process that runs it and reclaimable by the kernel.
	AnonMB float64 `json:"anon_mb"`
	Procs  int     `json:"procs"`
	Errors int     `json:"errors"`
}
