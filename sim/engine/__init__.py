"""The drivers that run a scenario over the replica kernel: the per-step SimPy driver and the
compiled fast driver, and what a run records."""
