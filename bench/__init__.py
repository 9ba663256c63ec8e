"""Benchmarks, run by hand: each prints figures and ratios against baselines from the same run.

See docs/performance.md for how to run them and the figures measured.
"""
