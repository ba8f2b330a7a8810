"""The scenario schema: TOML in, validated frozen dataclasses out, with `--set` overrides."""
