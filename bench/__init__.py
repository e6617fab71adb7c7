"""scratchprop's benchmarks (pytest-benchmark); run with ``pytest bench``. See README.md."""
