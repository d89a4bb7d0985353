"""Confusion matrices, metrics and benchmarks."""
