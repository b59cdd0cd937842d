"""`RUN --mount` (Dockerfile reference: RUN --mount, type=bind, type=cache, type=tmpfs).

- `bind` (the default type): `source` (default the root) of the build context, or
  of `from=<stage|image>`, at `target`, read-only; with `rw` writes go to a
  throw-away copy. Context binds honour `.dockerignore` and never leave the
  context (the bound tree is a copy of the allowed entries, hard-linked when it
  can be). The cache key has the content digest of what is bound (or the stage's
  key / image id).
- `cache`: a directory kept in the store (`<root>/build/cache-mounts/<id>`, made
  with `mode`/`uid`/`gid`), `id` defaulting to `target`; `ro`; `sharing=locked`
  takes an exclusive flock for the step (`shared` and `private` share it). Its
  content is not part of the cache key.
- `tmpfs`: a tmpfs at `target` (`size`).
- `secret`: the file given with `--secret id=ID,src=PATH`, copied (mode `mode`,
  default 0400, `uid`/`gid`) and bind-mounted read-only at `target` (default
  `/run/secrets/ID`); `required` fails the step when it was not given. Neither
  the content nor the path is in the cache key or the image.

Nothing mounted lands in the step's layer: the mounts live over the rootfs, and
the mount points the runtime had to create are removed before the diff.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.build.context import BuildContext, digest_entries
from corral.build.dockerfile import Instruction
from corral.build.expand import Lexer

TYPES = ("bind", "cache", "tmpfs", "secret")
_TARGET = ("target", "dst", "destination")
_FLAGS = ("rw", "readwrite", "ro", "readonly")
_KNOWN = {"bind": {"source", "from", "rw", "readwrite"} | set(_TARGET),
          "cache": {"id", "ro", "readonly", "sharing", "mode", "uid", "gid"} | set(_TARGET),
          "tmpfs": {"size"} | set(_TARGET),
          "secret": {"id", "required", "mode", "uid", "gid"} | set(_TARGET)}


@dataclass
class RunMount:
    type: str
    target: str
    options: dict[str, str]

    def flag(self, *names: str) -> bool:
        return any(self.options.get(n, "").lower() in ("", "true", "1") for n in names
                   if n in self.options)


def parse(ins: Instruction, lexer: Lexer, env: Mapping[str, str]) -> list[RunMount]:
    """The `--mount=` flags of a RUN (values expanded)."""
    mounts = []
    for value in ins.flag_all("mount"):
        options: dict[str, str] = {}
        for part in lexer.word(value, env).split(","):
            key, eq, val = part.partition("=")
            key = key.strip().lower()
            if not key:
                continue
            options[key] = val if eq else ""
        kind = options.pop("type", "bind") or "bind"
        if kind not in TYPES:
            raise ins.error(f"--mount type={kind} is not supported (bind, cache, tmpfs, "
                            "secret)")
        unknown = set(options) - _KNOWN[kind]
        if unknown:
            raise ins.error(f"--mount type={kind}: unknown option {min(unknown)!r}")
        target = next((options[k] for k in _TARGET if options.get(k)), "")
        if kind == "secret" and not target:
            if not options.get("id"):
                raise ins.error("--mount type=secret: an id or a target is required")
            target = "/run/secrets/" + options["id"]
        if kind == "secret" and not options.get("id"):
            options["id"] = os.path.basename(target)
        if not target:
            raise ins.error(f"--mount type={kind}: a target is required")
        if not target.startswith("/"):
            target = "/" + target
        mounts.append(RunMount(kind, os.path.normpath(target), options))
    return mounts


@dataclass
class Planned:
    """The mounts of one RUN: their cache-key texts, then (if the step runs) their
    host sources, prepared by `materialize` and released by `cleanup`."""

    mounts: list[RunMount]
    keys: list[str] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def cleanup(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except OSError:
                pass
        self.cleanups.clear()


def plan(ins: Instruction, mounts: list[RunMount], *, context: BuildContext | None,
         stage_root: Callable[[str], tuple[str, str | None]],
         secrets: Mapping[str, str] | None = None) -> Planned:
    """Cache-key texts for `mounts`; `stage_root(ref)` gives (key text, image id) of a
    stage or image named by `from=`; `secrets` maps `--secret` ids to host files."""
    planned = Planned(mounts)
    for m in mounts:
        if m.type == "secret":
            ident = m.options["id"]
            path = (secrets or {}).get(ident)
            if path is None and m.flag("required"):
                raise ins.error(f"--mount type=secret: secret {ident!r} is required but "
                                "no --secret id={ident} was given")
            planned.sources.append(("secret", path, None))
            planned.keys.append(f"secret {m.target} id={ident}")  # never its content
        elif m.type == "bind":
            source = m.options.get("source", "")
            origin = m.options.get("from")
            if origin:
                key, image = stage_root(origin)
                planned.sources.append(("image", image, source))
                planned.keys.append(f"bind {m.target} from={key} source={source} "
                                    f"rw={m.flag('rw', 'readwrite')}")
            else:
                assert context is not None
                found = context.sources([source or "."])[0]
                planned.sources.append(("context", found, source))
                planned.keys.append(f"bind {m.target} source={source} "
                                    f"rw={m.flag('rw', 'readwrite')} "
                                    + digest_entries(found.entries, context.cache))
        elif m.type == "cache":
            if m.options.get("from"):
                raise ins.error("--mount type=cache,from= is not supported")
            ident = m.options.get("id") or m.target
            planned.sources.append(("cache", ident, None))
            planned.keys.append(f"cache {m.target} id={ident} ro={m.flag('ro', 'readonly')}")
        else:
            planned.sources.append(("tmpfs", None, None))
            planned.keys.append(f"tmpfs {m.target} size={m.options.get('size', '')}")
    return planned


def materialize(planned: Planned, *, store: Any, tmpdir: str) -> list[dict[str, Any]]:
    """Prepare the host side of every mount; the OCI mounts for the spec."""
    from corral.linux.mounts import secure_join

    out: list[dict[str, Any]] = []
    for m, (kind, what, source) in zip(planned.mounts, planned.sources):
        if kind == "secret":
            if what is None:
                continue  # an optional secret that was not given: nothing is mounted
            scratch = tempfile.mkdtemp(prefix="run-secret-", dir=tmpdir)
            planned.cleanups.append(functools.partial(shutil.rmtree, scratch,
                                                      ignore_errors=True))
            copy = os.path.join(scratch, "secret")
            shutil.copyfile(what, copy)
            os.chmod(copy, int(m.options.get("mode") or "400", 8))
            os.chown(copy, int(m.options.get("uid") or 0), int(m.options.get("gid") or 0))
            out.append({"destination": m.target, "type": "bind", "source": copy,
                        "options": ["bind", "ro", "nosuid", "nodev", "noexec"]})
            continue
        if kind == "tmpfs":
            options = ["nosuid", "nodev"]
            if m.options.get("size"):
                options.append(f"size={m.options['size']}")
            out.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                        "options": options})
            continue
        if kind == "cache":
            cache = _cache_dir(store, what, m)
            if m.options.get("sharing") == "locked":
                fd = os.open(str(cache) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                planned.cleanups.append(functools.partial(os.close, fd))
            ro = m.flag("ro", "readonly")
            out.append({"destination": m.target, "type": "bind", "source": str(cache),
                        "options": ["rbind", "ro" if ro else "rw"]})
            continue
        rw = m.flag("rw", "readwrite")
        scratch = tempfile.mkdtemp(prefix="run-mount-", dir=tmpdir)
        planned.cleanups.append(functools.partial(shutil.rmtree, scratch, ignore_errors=True))
        if kind == "context":
            found = what
            copy = os.path.join(scratch, "src")
            _replicate(found, copy, link=not rw)  # rw writes must not reach the context
            path = copy
        else:
            root = os.path.join(scratch, "root")
            os.mkdir(root)
            if what is not None:
                store.mount_image(what, Path(root))

                def unmount(root: str = root) -> None:
                    from corral.storage.mount import unmount_all_under

                    unmount_all_under(Path(root))

                planned.cleanups.append(unmount)
            path = secure_join(root, source or "/")
            if rw:
                copy = os.path.join(scratch, "copy")
                if os.path.isdir(path):
                    shutil.copytree(path, copy, symlinks=True)
                else:
                    shutil.copy2(path, copy)
                path = copy
        out.append({"destination": m.target, "type": "bind", "source": path,
                    "options": ["rbind", "rw" if rw else "ro"]})
    return out


def _cache_dir(store: Any, ident: str, m: RunMount) -> Path:
    base = Path(store.root) / "build" / "cache-mounts"
    base.mkdir(parents=True, exist_ok=True)
    path = base / hashlib.sha256(ident.encode()).hexdigest()[:32]
    if not path.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
        os.chmod(tmp, int(m.options.get("mode") or "755", 8))
        os.chown(tmp, int(m.options.get("uid") or 0), int(m.options.get("gid") or 0))
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another build made it meanwhile
    return path


def _replicate(found: Any, dest: str, *, link: bool) -> None:
    """A copy of a context source's allowed entries (hard links when `link` allows)."""
    if not found.is_dir:
        _link_or_copy(found.path, dest, link)
        return
    os.mkdir(dest, 0o755)
    for entry in found.entries:
        target = os.path.join(dest, entry.rel)
        mode = entry.st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(target, stat.S_IMODE(mode) | 0o700)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.path), target)
        elif stat.S_ISREG(mode):
            _link_or_copy(entry.path, target, link)


def _link_or_copy(source: str, target: str, link: bool) -> None:
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


__all__ = ["Planned", "RunMount", "materialize", "parse", "plan"]
