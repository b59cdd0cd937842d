"""/etc/hosts for containers on networks: the container's own addresses with its
hostname, name and aliases, and every peer on a shared network by name and alias (name
resolution the way docker's legacy links and podman without a DNS server do it).

A running container's hosts file is bind-mounted, so updates rewrite it in place
(same inode); before start it is replaced atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

LOCALHOST = ("127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4\n"
             "::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6\n")


def render(own: Iterable[tuple[str, list[str]]], peers: Iterable[tuple[str, list[str]]],
           extra: Iterable[tuple[str, str]] = ()) -> str:
    """`own`/`peers`: (ip, names) pairs; `extra`: (`--add-host` name, ip)."""
    lines = [LOCALHOST]
    seen: set[tuple[str, str]] = set()
    for ip, names in list(own) + list(peers):
        names = [n for n in dict.fromkeys(names) if n and (ip, n) not in seen]
        if names:
            seen.update((ip, n) for n in names)
            lines.append(f"{ip}\t{' '.join(names)}\n")
    for name, ip in extra:
        lines.append(f"{ip}\t{name}\n")
    return "".join(lines)


def write(path: Path, text: str, *, in_place: bool) -> None:
    """In place for a file a running container has bind-mounted; else atomically."""
    if in_place and path.exists():
        with open(path, "r+") as f:
            f.write(text)
            f.truncate()
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
