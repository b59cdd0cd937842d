"""A RUN instruction as a process (Dockerfile reference: RUN, Shell and exec form,
SHELL, Here-Documents, RUN --network; runtime-spec config.md for the result).

- `command(ins, config)`: the exec form as is; the shell form through SHELL
  (default `/bin/sh -c`); `RUN <<EOF` alone runs the body with the shell, or when
  the body starts with `#!` executes it as a script (returned separately: it is
  bind-mounted at /dev/corral-heredoc, a tmpfs, so it never lands in the layer);
  `RUN cmd <<EOF ...` hands the command and its documents to the shell.
- `process_spec(...)`: the OCI spec of the step: the image config's Env plus the
  ARGs in scope, WORKDIR as cwd, USER resolved in the image, podman's default
  capabilities and seccomp filter, the host's network (and its /etc/resolv.conf and
  /etc/hosts, read-only) or none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corral.build import config_ops
from corral.build.dockerfile import Instruction

SCRIPT_PATH = "/dev/corral-heredoc"
#: Host files a RUN step on the host network sees, bind-mounted read-only (as buildah).
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")
NETWORKS = ("host", "none", "default")


def command(ins: Instruction, config: dict[str, Any]) -> tuple[list[str], str | None]:
    """(argv, here-doc script or None) of a RUN (see the module docstring)."""
    if ins.json:
        return list(ins.args), None
    rest = ins.rest.strip()
    if ins.heredocs and rest.startswith("<<") and len(rest.split()) == 1:
        body = ins.heredocs[0].body
        if body.startswith("#!"):
            return [SCRIPT_PATH], body
        text = body
    elif ins.heredocs:
        text = ins.rest + "\n" + "".join(h.body + h.name + "\n" for h in ins.heredocs)
    else:
        text = ins.rest
    return config_ops.command_of(Instruction("RUN", text, ins.line, ins.end_line, text),
                                 config), None


def process_spec(config: dict[str, Any], rootfs: Path, argv: Sequence[str],
                 env: Sequence[str], network: str) -> tuple[dict[str, Any], list[dict]]:
    """(runtime spec, extra mounts) of a RUN in `rootfs` with image config `config`."""
    from corral.image.runtime_spec import spec_for
    from corral.oci.image import ImageConfig

    c = {k: v for k, v in (config.get("config") or {}).items() if v is not None}
    image = ImageConfig({**config, "config": c})
    host = network in ("host", "default")
    spec = spec_for(image, rootfs, command=list(argv), entrypoint=[], env=list(env),
                    workdir=c.get("WorkingDir") or "/", user=c.get("User") or "",
                    network="host" if host else "none", root_path="merged")
    from corral.engine.seccomp_default import default_profile

    # the default seccomp filter, as podman/buildah give RUN steps
    spec["linux"]["seccomp"] = default_profile(spec["process"]["capabilities"]["bounding"])
    mounts = []
    if host:
        mounts = [{"destination": path, "type": "bind", "source": path,
                   "options": ["rbind", "ro", "nosuid", "nodev"]}
                  for path in HOST_FILES if os.path.exists(path)]
    return spec, mounts


def script_mount(path: str) -> dict[str, Any]:
    return {"destination": SCRIPT_PATH, "type": "bind", "source": path,
            "options": ["bind", "ro"]}


__all__ = ["HOST_FILES", "NETWORKS", "SCRIPT_PATH", "command", "process_spec", "script_mount"]
