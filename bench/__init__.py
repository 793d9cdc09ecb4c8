"""Benchmarks of the portal (`make bench`): measured and reported, never asserted in tests."""
