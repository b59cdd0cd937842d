"""The `tarball:PATH` source: a root filesystem tar made into a one-layer image (`import`).

Like `podman import`: the tar (plain, gzip or zstd; `-` reads stdin) becomes the
image's only layer, stored uncompressed (its digest is its diff id), and a fresh
config (linux/<host arch>, `created` now, one history entry) gets the
Dockerfile-style `--change` instructions podman accepts, either `CMD=["sh"]` or
`CMD sh -c x` form: CMD, ENTRYPOINT (JSON array or shell form, which becomes
`/bin/sh -c ...`), ENV (`K=V ...` or `K V`), WORKDIR, USER, EXPOSE, VOLUME,
LABEL, STOPSIGNAL.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import tempfile
import time
from typing import Any, BinaryIO

from corral.image.transports._files import NoClose
from corral.image.transports.types import ArchiveNotFound, SourceImage, TransportError
from corral.oci import digest as digests
from corral.oci.image import OCI_CONFIG, OCI_LAYER, Descriptor, Manifest, canonical_json

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class InvalidChange(TransportError):
    """A --change instruction is not one Corral understands."""


def _command(value: str, what: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise InvalidChange(f"{what}: {value!r} is not a JSON array") from None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise InvalidChange(f"{what}: {value!r} must be a JSON array of strings")
        return parsed
    return ["/bin/sh", "-c", value] if value else []


def apply_changes(config: dict[str, Any], changes: list[str]) -> None:
    """Apply Dockerfile-style instructions to `config["config"]` (see the module docstring)."""
    c = config.setdefault("config", {})
    for change in changes:
        change = change.strip()
        head, sep, rest = change.partition("=")
        key = head.strip().upper()
        if not sep or any(ch.isspace() for ch in head):
            first, _, rest = change.partition(" ")
            key = first.strip().upper()
        what = f"--change {change!r}"
        if key == "CMD":
            c["Cmd"] = _command(rest, what)
        elif key == "ENTRYPOINT":
            c["Entrypoint"] = _command(rest, what)
        elif key == "ENV":
            env = [e for e in c.get("Env") or []]
            pairs: list[tuple[str, str]] = []
            words = shlex.split(rest)
            if words and "=" not in words[0]:
                pairs = [(words[0], " ".join(words[1:]))]
            else:
                for word in words:
                    name, eq, val = word.partition("=")
                    if not eq or not name:
                        raise InvalidChange(f"{what}: expected NAME=VALUE")
                    pairs.append((name, val))
            for name, val in pairs:
                env = [e for e in env if e.partition("=")[0] != name] + [f"{name}={val}"]
            c["Env"] = env
        elif key == "WORKDIR":
            c["WorkingDir"] = rest.strip()
        elif key == "USER":
            c["User"] = rest.strip()
        elif key == "STOPSIGNAL":
            c["StopSignal"] = rest.strip()
        elif key == "EXPOSE":
            ports = c.setdefault("ExposedPorts", {})
            for port in rest.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
        elif key == "VOLUME":
            vols = c.setdefault("Volumes", {})
            value = rest.strip()
            paths = _command(value, what) if value.startswith("[") else value.split()
            for path in paths:
                vols[path] = {}
        elif key == "LABEL":
            labels = c.setdefault("Labels", {})
            for word in shlex.split(rest):
                name, eq, val = word.partition("=")
                if not eq:
                    raise InvalidChange(f"{what}: expected NAME=VALUE")
                labels[name] = val
        else:
            raise InvalidChange(f"{what}: unsupported instruction {key!r} (CMD, ENTRYPOINT, "
                                "ENV, WORKDIR, USER, EXPOSE, VOLUME, LABEL, STOPSIGNAL)")


class TarballSource:
    def __init__(self, path: str, changes: list[str], message: str | None = None,
                 tmpdir: str | None = None, created_by: str | None = None) -> None:
        from corral.image.compression import open_layer

        self.tmp = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115
        try:
            if path == "-":
                stream: BinaryIO = sys.stdin.buffer
                opened = None
            else:
                try:
                    opened = open(path, "rb")  # noqa: SIM115
                except FileNotFoundError:
                    raise ArchiveNotFound(f"{path}: no such file") from None
                except IsADirectoryError:
                    raise TransportError(f"{path}: is a directory, not a tar archive") from None
                stream = opened
            hasher = digests.Hasher()
            with open_layer(stream) as raw:
                while chunk := raw.read(1 << 20):
                    hasher.update(chunk)
                    self.tmp.write(chunk)
            if opened is not None:
                opened.close()
            self.tmp.flush()
            if hasher.size < 1024 or not _looks_like_tar(self.tmp):
                raise TransportError(f"{path}: not a tar archive")
            self.layer = Descriptor(OCI_LAYER, hasher.digest(), hasher.size)
            created = now_rfc3339()
            config: dict[str, Any] = {
                "created": created, "architecture": host_arch(), "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [self.layer.digest]},
                "history": [{"created": created,
                             "created_by": created_by or f"corral import {path}",
                             **({"comment": message} if message else {})}],
            }
            apply_changes(config, changes)
            self.config_bytes = canonical_json(config)
        except BaseException:
            self.tmp.close()
            raise

    def images(self) -> list[SourceImage]:
        desc = Descriptor(OCI_CONFIG, digests.of_bytes(self.config_bytes),
                          len(self.config_bytes))
        return [SourceImage(Manifest(desc, [self.layer]), self.config_bytes, None, ())]

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        if desc.digest != self.layer.digest:
            raise TransportError(f"tarball: no blob {desc.digest}")
        self.tmp.seek(0)
        return NoClose(self.tmp)  # type: ignore[return-value]

    def close(self) -> None:
        self.tmp.close()


def _looks_like_tar(f: Any) -> bool:
    f.seek(0)
    header = f.read(512)
    f.seek(0, 2)
    if header == bytes(512):
        return True  # an empty archive
    return header[257:262] == b"ustar" or _checksum_ok(header)


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = int(header[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(header[:148]) + 256 + sum(header[156:])


class TarballReference:
    transport = "tarball"

    def __init__(self, path: str, changes: list[str] | None = None, message: str | None = None,
                 tmpdir: str | None = None, created_by: str | None = None) -> None:
        self.path = path
        self.changes = list(changes or [])
        self.message = message
        self.tmpdir = tmpdir
        self.created_by = created_by

    def open_source(self) -> TarballSource:
        return TarballSource(self.path, self.changes, self.message, self.tmpdir,
                             self.created_by)

    def open_destination(self) -> Any:
        raise TransportError("tarball: is a source only (use export for a container's files)")

    def __str__(self) -> str:
        return f"tarball:{self.path}"


__all__ = ["InvalidChange", "TarballReference", "TarballSource", "apply_changes", "host_arch"]
