"""Helpers shared by the integration suites: OCI bundles, runtime wrappers, consoles."""
