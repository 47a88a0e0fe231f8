"""Outlast reference system: a faithful model of named tunnels (never imports harness)."""
