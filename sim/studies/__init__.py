"""Many runs: policy comparisons, load sweeps, capacity plans, fleets of cells, executors."""
