"""Benchmarks of the library itself (the `mimic-bench` commands that time things)."""
