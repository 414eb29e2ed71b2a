"""The benchmark suite's sections (``benchmarks/run.py`` runs them)."""
