"""keycloak-sidecar: health-monitoring sidecar for clustered Keycloak on Kubernetes."""

__version__ = "0.1.0"
