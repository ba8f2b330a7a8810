"""Routers and batch schedulers: policies over the replica state, registered by name."""
