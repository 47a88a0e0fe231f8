"""Benchmarks (run as scripts, never as tests) and their pure helpers."""
