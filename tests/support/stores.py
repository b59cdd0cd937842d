"""Removing a test's store root: what it mounted, then the tree.

`run --rm` finishes its removal in a detached process (the container's directory is
renamed to `storage/containers/.removing-<id>`, then unmounted and deleted in the
background: docs/design/engine.md), so a test that removes its root right after may
race it: the tree is retried until nothing is left (or `timeout`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path


def unmount_under(root: Path) -> None:
    """Lazily unmount every mount point below `root`, deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_root(root: Path, timeout: float = 5.0) -> None:
    """Unmount what is under `root` and delete it, retrying while a background removal
    still holds part of it."""
    deadline = time.monotonic() + timeout
    while True:
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists() or time.monotonic() >= deadline:
            return
        time.sleep(0.05)
