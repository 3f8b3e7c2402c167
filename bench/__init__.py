"""Benchmarks of issue 6 (`make bench`): measurements only, results written to docs/benchmarks.md by bench.run."""
