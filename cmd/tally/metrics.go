package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tallyvote/tally/projector"
)

// newRegistry returns the metrics registry of a role's process: the Go
// runtime's and the process's metrics, and the components' (each
// registers its own). tally hub's serves on the gateway's /metrics,
// tally region's on the intake's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// registerProjector adds the projector's metrics to the hub's registry;
// nothing when there is no projector.
func registerProjector(reg prometheus.Registerer, proj *projector.Service) error {
	if proj == nil || reg == nil {
		return nil
	}
	if err := reg.Register(proj); err != nil {
		return fmt.Errorf("projector metrics: %w", err)
	}
	return nil
}
