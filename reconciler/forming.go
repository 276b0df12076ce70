package reconciler

import (
	"context"
	"time"
)

// formingRetry is how long the hub retries its first JetStream call on an
// external cluster.
const formingRetry = 30 * time.Second

// whileForming calls f until it succeeds, ctx is done or formingRetry has
// passed, once a second, when the hub runs on an external NATS cluster: one
// that is still forming refuses to place replicas on a node it does not yet
// know to be up ("no suitable peers for placement") or has no JetStream
// leader yet, and a hub started with its servers must not fail for that.
// With the embedded server, f runs once. It returns f's last error.
func (r *Reconciler) whileForming(ctx context.Context, what string, f func() error) error {
	deadline := time.Now().Add(formingRetry)
	for {
		err := f()
		if err == nil || r.ns != nil || time.Now().After(deadline) {
			return err
		}
		r.log.Warn().Err(err).Str("op", what).Msg("jetstream setup failed: retrying while the cluster forms")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}
