"""Replica state and its transitions: queue disciplines, paged KV with prefix caching and
preemption, step commit (see docs/design.md section 3)."""
