"""Latency, throughput, cold start, memory and footprint of the service against its baselines.

Run `python -m benchmarks.run` (or `make bench`); `--quick` for a smoke run. The results
go to benchmarks/results/latest.{json,md,png}.
"""
