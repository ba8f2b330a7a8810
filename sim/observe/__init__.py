"""Measurements of a live server: `dcsim observe` (a streaming benchmark client sending a
scenario's workload), observed runs read back (observe folders, vLLM `bench serve` JSON), and
`dcsim calibrate` (a hardware profile fitted on them)."""
