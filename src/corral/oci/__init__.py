"""OCI specifications as data: runtime config and state, JSON schema checks."""
