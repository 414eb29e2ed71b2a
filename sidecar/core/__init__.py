"""The pure core: the event vocabulary, the state record, the verdicts, cluster membership.

Nothing here does I/O or reads a clock, and nothing here imports from outside ``sidecar.core``
(tests/test_hygiene.py enforces the import direction).
"""
