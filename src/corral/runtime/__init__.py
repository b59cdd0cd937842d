"""corral-runtime: the low-level OCI runtime with runc's command-line contract."""
