"""Benchmarks of sb3_elmur: run from the repository root as modules, e.g. ``python -m benchmarks.popgym_suite``.

``harness`` trains, evaluates and caches jobs (one cache for every script here); the other modules are the suites
and measurements built on it. Results land under ``benchmarks/results/<name>/``.
"""
