"""Benchmarks: speed and size figures, written to a results file (never timed tests)."""
