"""Outlast harness: stacks, fault proxy, faults, probes, journal, checks, scenarios, reports."""
