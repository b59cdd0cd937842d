"""/etc/hosts for containers on networks: the container's own addresses with its
hostname, name and aliases, and every peer on a shared network by name and alias (name
resolution the way docker's legacy links and podman without a DNS server do it).

A running container's hosts file is bind-mounted, so updates rewrite it in place
(same inode); before start it is replaced atomically.
"""

from __future__ import annotations

import contextlib
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


class HostsRegistry:
    """Who is on which network, for /etc/hosts: one record per attached container under
    `dir/<id>` (its hosts file, names, addresses per network, `--add-host` entries).
    Joining or leaving rewrites the files of every container sharing a network, all
    under one lock, so containers started at the same moment still see each other."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def _records(self) -> dict[str, dict]:
        import json

        out = {}
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        for name in names:
            if name.startswith("."):
                continue
            try:
                out[name] = json.loads((self.dir / name).read_text())
            except (OSError, ValueError):
                continue
        return out

    def _lock(self):  # type: ignore[no-untyped-def]
        from corral.storage.records import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dir / ".lock").held()

    def join(self, container_id: str, record: dict) -> None:
        """`record`: hosts_path, names, networks {name: {"ips": [...], "aliases": [...]}},
        extra [(name, ip)]. Writes its file and its peers'."""
        import json

        with self._lock():
            tmp = self.dir / f".{container_id}.tmp"
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.dir / container_id)
            self._rewrite(self._records(), set(record.get("networks") or {}))

    def leave(self, container_id: str) -> None:
        with self._lock():
            records = self._records()
            gone = records.pop(container_id, None)
            if gone is None:
                return
            with contextlib.suppress(FileNotFoundError):
                (self.dir / container_id).unlink()
            self._rewrite(records, set(gone.get("networks") or {}))

    @staticmethod
    def _rewrite(records: dict[str, dict], networks: set[str]) -> None:
        for cid, rec in records.items():
            mine = rec.get("networks") or {}
            if not networks & set(mine):
                continue
            own = [(ip, list(rec.get("names") or []) + list(net.get("aliases") or []))
                   for net in mine.values() for ip in net.get("ips") or []]
            peers = []
            for other_id, other in records.items():
                if other_id == cid:
                    continue
                for name, net in (other.get("networks") or {}).items():
                    if name in mine:
                        names = list(other.get("names") or []) + list(net.get("aliases") or [])
                        peers.extend((ip, names) for ip in net.get("ips") or [])
            text = render(own, peers, [tuple(e) for e in rec.get("extra") or []])
            with contextlib.suppress(OSError):
                write(Path(rec["hosts_path"]), text, in_place=True)
