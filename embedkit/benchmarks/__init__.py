"""Benchmarks that write reports into eval/ (run through ``make bench-...``)."""
