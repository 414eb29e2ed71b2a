"""Scenario scripts for the simulated Keycloak (``fake_keycloak.py``), built from real lines."""
