// Package analysis judges a baking rollout wave: it scrapes the request
// metrics of the bundled proxies (Scrape, ScrapeAll), turns them into the
// wave's and the baseline's traffic since the wave started (Sample, Delta),
// and checks them, and any Prometheus queries, against a RolloutPolicy's
// analysis (Check, Verdict).
//
// A typical check, every analysis interval:
//
//	start, _ := analysis.ScrapeAll(ctx, client, allAdminAddrs)        // when the wave starts
//	...
//	now, err := analysis.ScrapeAll(ctx, client, allAdminAddrs)        // err names unreachable proxies
//	in := analysis.Input{
//		Wave:      analysis.Delta(pick(now, waveAddrs), start),
//		Baseline:  analysis.Delta(pick(now, baselineAddrs), start),
//		WaveNodes: waveNodeIDs,
//		Revision:  revision,
//	}
//	readings := analysis.Check(ctx, policy.Spec.Analysis.Effective(), in, analysis.Prometheus{Client: client})
//	switch analysis.Verdict(readings) { ... }
//
// The package keeps no state between checks; counting consecutive
// failures against FailureThreshold is the caller's.
package analysis
