"""Reading Keycloak's log: sources (file, stdin), wake-ups, layouts, rules, scanning, records.

Depends on ``sidecar.core`` only (plus the C library helpers in ``sidecar.libc``).
"""
