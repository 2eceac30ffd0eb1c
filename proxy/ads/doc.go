// Package ads is the proxy's ADS client: it keeps one aggregated discovery
// stream to the controller open at a time, reconnecting with jittered
// exponential backoff, subscribes to the resources the accepted
// configuration names, and ACKs or NACKs each response after its Handler
// (the proxy's applier) has built and applied it.
package ads
