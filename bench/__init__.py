"""Benchmarks that print figures; run with `make bench`. Results go into docs/performance.md."""
