"""Benchmarks of issue 10 (``python -m bench``; see docs/benchmarks.md). Run by hand, never in CI."""
