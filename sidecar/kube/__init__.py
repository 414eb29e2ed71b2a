"""The Kubernetes side: the API client, peer watches, the kill budget, Events, the pod log.

Depends on ``sidecar.core`` (plus settings and clock); never on the daemon's context.
"""
