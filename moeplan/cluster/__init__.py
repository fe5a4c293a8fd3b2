"""Cluster models: the hardware catalogue, memory per device, step time and the parallel-layout search (docs/cluster.md)."""
