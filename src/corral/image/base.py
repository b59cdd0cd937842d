"""Base images made on this host, without a registry.

- `busybox`: the host's static busybox (Debian's busybox-static, /bin/busybox) as
  /bin/busybox, one symlink per applet where `busybox --list-full` puts it (as
  `busybox --install -s` would), the usual top-level directories, /etc/passwd and
  /etc/group like the docker busybox image's, config Cmd ["sh"].
- `debian`: `debootstrap --variant=minbase <suite>` from the apt mirror this host
  is configured with (/etc/apt/sources.list or deb822 /etc/apt/sources.list.d/*.sources),
  apt lists and .deb caches removed, config Cmd ["bash"].

Both build a root directory, pack it into one layer tar (`diff_dirs` from an empty
directory: deterministic order, numeric owners, xattrs kept) and import it through
the `tarball:` source and the one copy routine, so the result is an ordinary
image in the store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from corral.errors import SystemFailure, Unavailable

BUSYBOX = "/bin/busybox"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
"""


class BaseImageFailed(SystemFailure):
    """Building a base image failed (busybox or debootstrap); the message says why."""


def _pack_and_import(store: Any, root: Path, name: str, changes: list[str],
                     created_by: str, tmpdir: str) -> Any:
    from corral.image.layer_diff import diff_dirs
    from corral.image.transports import copy
    from corral.image.transports.store import StoreReference
    from corral.image.transports.tarball import TarballReference

    empty = Path(tempfile.mkdtemp(prefix="empty-", dir=tmpdir))
    tar_path = Path(tmpdir) / "rootfs.tar"
    with open(tar_path, "wb") as out:
        diff_dirs(empty, root, out)
    source = TarballReference(str(tar_path), changes, tmpdir=tmpdir, created_by=created_by)
    copied = copy(source, StoreReference(store, name))
    return copied[0]


def _scratch(store: Any) -> str:
    base = Path(store.root) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="base-", dir=base)


def make_busybox(store: Any, name: str = "busybox", busybox: str = BUSYBOX) -> Any:
    """A busybox image named `name` in `store`; returns the CopiedImage."""
    if not os.path.isfile(busybox):
        raise Unavailable(f"{busybox} not found: install busybox-static (apt-get install "
                          "busybox-static)")
    listing = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise BaseImageFailed(f"{busybox} --list-full failed: {listing.stderr.strip()}")
    tmpdir = _scratch(store)
    try:
        root = Path(tmpdir) / "rootfs"
        for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "etc", "home", "proc",
                          "root", "sys", "tmp", "var/spool/mail", "var/www", "run"):
            (root / directory).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "tmp", 0o1777)
        os.chmod(root / "root", 0o700)
        shutil.copyfile(busybox, root / "bin" / "busybox")
        os.chmod(root / "bin" / "busybox", 0o755)
        for path in listing.stdout.split():
            path = path.strip("/")
            if not path or ".." in path.split("/") or path == "bin/busybox":
                continue
            link = root / path
            link.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(os.path.relpath("/bin/busybox", "/" + os.path.dirname(path)), link)
        (root / "etc" / "passwd").write_text(PASSWD)
        (root / "etc" / "group").write_text(GROUP)
        (root / "etc" / "hostname").write_text("corral\n")
        return _pack_and_import(store, root, name,
                                ['CMD ["sh"]', f"ENV {DEFAULT_PATH}"],
                                f"corral image busybox ({busybox})", tmpdir)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def apt_mirror() -> tuple[str, str]:
    """(mirror URL, suite) of the host's main Debian source (not -security/-updates)."""
    candidates: list[tuple[str, str]] = []
    sources = Path("/etc/apt/sources.list")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb":
                rest = [w for w in words[1:] if not w.startswith("[")]
                if len(rest) >= 2:
                    candidates.append((rest[0], rest[1]))
    directory = Path("/etc/apt/sources.list.d")
    if directory.is_dir():
        for path in sorted(directory.glob("*.sources")):
            for stanza in path.read_text().split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "deb").split():
                    continue
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        candidates.append((uri, suite))
    for uri, suite in candidates:
        if "-" not in suite and "security" not in uri:
            return uri, suite
    raise Unavailable("no Debian mirror found in /etc/apt/sources.list or "
                      "/etc/apt/sources.list.d/*.sources")


def make_debian(store: Any, name: str = "debian", *, suite: str | None = None,
                mirror: str | None = None, timeout: float = 1800.0) -> Any:
    """A minbase Debian image named `name` (see the module docstring)."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.path.exists(debootstrap):
        raise Unavailable("debootstrap is not installed (apt-get install debootstrap)")
    host_mirror, host_suite = apt_mirror()
    mirror = mirror or host_mirror
    suite = suite or host_suite
    tmpdir = _scratch(store)
    try:
        root = Path(tmpdir) / "rootfs"
        result = subprocess.run([debootstrap, "--variant=minbase", suite, str(root), mirror],
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise BaseImageFailed(f"debootstrap {suite} from {mirror} failed: "
                                  + " / ".join(tail))
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for entry in (root / junk).glob("*"):
                if entry.is_file() and entry.name != "lock":
                    entry.unlink()
        for entry in (root / "dev").iterdir():
            if entry.is_char_device() or entry.is_block_device():
                entry.unlink()  # the runtime makes /dev
        return _pack_and_import(store, root, name,
                                ['CMD ["bash"]', f"ENV {DEFAULT_PATH}"],
                                f"corral image debian (debootstrap --variant=minbase "
                                f"{suite} {mirror})", tmpdir)
    finally:
        subprocess.run(["umount", "-R", "-l", str(Path(tmpdir) / "rootfs" / "proc")],
                       capture_output=True, check=False)
        shutil.rmtree(tmpdir, ignore_errors=True)


__all__ = ["BaseImageFailed", "apt_mirror", "make_busybox", "make_debian"]
