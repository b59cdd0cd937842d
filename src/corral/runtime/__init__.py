"""corral-runtime: the low-level OCI runtime with runc's command-line contract."""

#: Corral's engine only (not runc's contract): in the environment of `create`, the
#: seconds to wait for the bundle's config.json to appear. The engine starts conmon, and
#: so this `create`, while it still mounts the rootfs and writes the spec, to overlap
#: their start-ups (engine.Engine.create(start_next=True)).
AWAIT_CONFIG_ENV = "CORRAL_RUNTIME_AWAIT_CONFIG"
