"""Benchmarks of Hardness Explorer: ``python -m bench [--quick]`` (see BENCHMARKS.md)."""
