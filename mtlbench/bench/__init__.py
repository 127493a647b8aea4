"""Benchmarks of the harness itself: model throughput, input pipeline, strategies, study."""
