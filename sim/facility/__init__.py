"""The facility at run time: its graph and the power ledger (no event loop)."""
