"""The default seccomp profile (config-linux.md#seccomp) as podman builds it.

containers/common ships its profile in its own format (`data/seccomp.json`, copied
unchanged from pkg/seccomp/seccomp.json): an `archMap` instead of a flat
`architectures` list, and per rule `includes`/`excludes` conditions on the
container's capabilities (`caps`), the host's architecture (`arches`, Go names such
as amd64) and kernel (`minKernel`). `to_oci` resolves those conditions for one
container and returns a plain OCI `linux.seccomp` section: a rule that needs
CAP_SYS_ADMIN is present only when the container has it, so `--cap-add` widens the
filter as it does under podman and docker.

`load(path)` reads a user's `--security-opt seccomp=PATH` file in either format (an
OCI section passes through; rules' `includes`/`excludes` are resolved the same way).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from corral.errors import InvalidArgument, NotFound

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

#: uname machine -> (OCI/libseccomp architecture, Go architecture name)
_MACHINES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "i386": ("SCMP_ARCH_X86", "386"), "i686": ("SCMP_ARCH_X86", "386"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"), "armv6l": ("SCMP_ARCH_ARM", "arm"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"), "ppc64": ("SCMP_ARCH_PPC64", "ppc64"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
    "mips64": ("SCMP_ARCH_MIPS64", "mips64"), "loongarch64": ("SCMP_ARCH_LOONGARCH64", "loong64"),
}
#: Go names the containers profile uses for a native arch (x86 covers 386 too)
_GO_ALIASES = {"386": {"386", "x86"}, "amd64": {"amd64"}, "arm64": {"arm64"},
               "arm": {"arm"}}

_RULE_FIELDS = ("names", "action", "errnoRet", "args")


class SeccompProfileError(InvalidArgument):
    """A seccomp profile file is unreadable or malformed."""


def host_arch(machine: str | None = None) -> tuple[str, str]:
    """(SCMP_ARCH_..., Go arch) of this host (or of `machine`)."""
    machine = machine or os.uname().machine
    try:
        return _MACHINES[machine]
    except KeyError:
        raise SeccompProfileError(f"seccomp: unsupported architecture {machine!r}") from None


def _kernel_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def _cap_names(capabilities: Iterable[str]) -> set[str]:
    out = set()
    for cap in capabilities:
        cap = cap.upper()
        out.add(cap if cap.startswith("CAP_") else "CAP_" + cap)
    return out


def _matches(cond: dict[str, Any], caps: set[str], go_arch: str, kernel: tuple[int, ...],
             *, exclude: bool) -> bool:
    """includes: every condition holds; excludes: any condition holds (then skip)."""
    arches = set(cond.get("arches") or [])
    wanted_caps = _cap_names(cond.get("caps") or [])
    min_kernel = cond.get("minKernel")
    aliases = _GO_ALIASES.get(go_arch, {go_arch})
    if exclude:
        return bool((arches and arches & aliases) or (wanted_caps and wanted_caps & caps))
    if arches and not arches & aliases:
        return False
    if wanted_caps and not wanted_caps <= caps:
        return False
    return not (min_kernel and kernel < _kernel_tuple(str(min_kernel)))


def to_oci(profile: dict[str, Any], capabilities: Iterable[str], *,
           machine: str | None = None, kernel: str | None = None) -> dict[str, Any]:
    """The OCI `linux.seccomp` section of `profile` for a container with `capabilities`."""
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise SeccompProfileError("seccomp profile: no defaultAction")
    caps = _cap_names(capabilities)
    native, go_arch = host_arch(machine)
    kernel_version = _kernel_tuple(kernel or os.uname().release)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    elif profile.get("archMap"):
        arches: list[str] = []
        for entry in profile["archMap"]:
            if entry.get("architecture") == native:
                arches = [native] + [a for a in entry.get("subArchitectures") or []]
                break
        if arches:
            out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if key in profile:
            out[key] = profile[key]
    rules = []
    for index, rule in enumerate(profile.get("syscalls") or []):
        if not isinstance(rule, dict):
            raise SeccompProfileError(f"seccomp profile: syscalls[{index}] is not an object")
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        if not names:
            continue
        if not _matches(rule.get("includes") or {}, caps, go_arch, kernel_version,
                        exclude=False):
            continue
        if _matches(rule.get("excludes") or {}, caps, go_arch, kernel_version, exclude=True):
            continue
        item: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            item["errnoRet"] = rule["errnoRet"]
        args = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                for a in rule.get("args") or []]
        if args:
            item["args"] = args
        rules.append(item)
    out["syscalls"] = rules
    return out


def default_source() -> dict[str, Any]:
    """containers/common's profile, as shipped in `corral/engine/data/seccomp.json`."""
    # a plain file read: importlib.resources would cost zipfile & co. (~4 ms) per command
    text = (Path(__file__).parent / "data" / "seccomp.json").read_text()
    return json.loads(text)


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A profile file (containers or OCI format)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"seccomp profile {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise SeccompProfileError(f"seccomp profile {path}: {exc}") from None
    if not isinstance(data, dict) or "defaultAction" not in data:
        raise SeccompProfileError(f"seccomp profile {path}: not a seccomp profile "
                                  "(no defaultAction)")
    return data


def default_profile(capabilities: Iterable[str], **kwargs: Any) -> dict[str, Any]:
    """The default OCI `linux.seccomp` for a container with `capabilities`."""
    return to_oci(default_source(), capabilities, **kwargs)


__all__ = ["SeccompProfileError", "default_profile", "default_source", "host_arch", "load",
           "to_oci"]
