"""The benchmark suite (not part of the test run): ``make bench`` or ``python -m benchmarks``."""
