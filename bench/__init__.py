"""Benchmarks run by hand against the local stack (`python -m bench NAME`); never in tests."""
