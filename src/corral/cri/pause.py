"""The pod infra ("pause") image, made on this host: Debian's static catatonit as
/catatonit, run as `catatonit -P` (pause mode: PID 1 that only sleeps and reaps).

No registry is needed: the image is built from the host's binary the first time a
pod sandbox needs it and imported into the store like `corral image busybox`.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

from corral.errors import NotFound, Unavailable

PAUSE_IMAGE = "localhost/corral/pause:catatonit"
CATATONIT = "/usr/bin/catatonit"
COMMAND = ["/catatonit", "-P"]

_lock = threading.Lock()


def ensure(store: Any, name: str = PAUSE_IMAGE, binary: str = CATATONIT) -> str:
    """The pause image's id in `store`, built from `binary` when missing. Only the
    build is serialized: every RunPodSandbox asks, and a lookup must not queue behind
    another pod's."""
    try:
        return str(store.image(name).id)
    except NotFound:
        pass
    with _lock:
        try:
            return str(store.image(name).id)
        except NotFound:
            pass
        if not os.path.isfile(binary):
            raise Unavailable(f"{binary} not found: the pod infra image needs catatonit "
                              "(apt-get install catatonit)")
        from corral.image.base import _pack_and_import, _scratch

        tmpdir = _scratch(store)
        try:
            root = Path(tmpdir) / "rootfs"
            for d in ("dev", "proc", "sys", "etc", "tmp"):
                (root / d).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(binary, root / "catatonit")
            os.chmod(root / "catatonit", 0o755)
            (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/catatonit\n")
            (root / "etc" / "group").write_text("root:x:0:\n")
            copied = _pack_and_import(store, root, name,
                                      [f"ENTRYPOINT {_json(COMMAND)}"],
                                      f"corral cri pause image ({binary})", tmpdir)
            return str(copied.id)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
