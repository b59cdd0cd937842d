"""Helpers shared by the drivers."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from corral.errors import SystemFailure


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a rootfs keeping owners, modes, times, links, xattrs, device nodes (cp -a)."""
    dst.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", f"{dst}/"],
                            capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise SystemFailure(f"copying {src} to {dst}: {result.stderr.strip()}")


def remove_tree(path: Path) -> None:
    """rm -rf that also copes with read-only directories inside."""
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError:
        subprocess.run(["chmod", "-R", "u+rwx", str(path)], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        raise SystemFailure(f"cannot remove {path}")


def empty_dir(home: Path) -> Path:
    """An always-empty directory (the lower of a container from scratch, diff base)."""
    path = home / "empty"
    path.mkdir(parents=True, exist_ok=True)
    return path
