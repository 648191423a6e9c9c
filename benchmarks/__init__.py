"""Benchmarks: commands that measure and record results in benchmarks/results/."""
