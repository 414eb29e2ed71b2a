"""The sidecar's own HTTP server: the probe endpoints, ``/status`` and ``/metrics``."""
