"""Distribution: the OCI distribution API client (`client*`) and server (`server/`)."""
