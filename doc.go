// Package flotilla holds the domain of the Flotilla over-the-air update
// system: tenants, tokens, artifacts, devices, deployments, rollouts and the
// errors they produce.
//
// The package is plain Go types and pure functions. It imports only the
// standard library and does no I/O, so that storage, device protocols and the
// management API can all share one vocabulary without depending on each
// other.
package flotilla
