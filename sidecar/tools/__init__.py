"""Command-line tools built on the core: ``analyze`` and ``demo``."""
