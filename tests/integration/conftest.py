"""Fixtures for the runtime integration suite, parametrized over corral-runtime and runc.

Every test gets a `runtime` (a private --root) and a `bundle`; teardown always
runs `delete --force` on every container the test created, removes the bundle
directory and the corral-test-<id> cgroups of the test's own containers (never
other ones: other sessions may be running containers at the same time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support.bundles import (
    BUSYBOX,
    CORRAL_RUNTIME,
    ID_PREFIX,
    Bundle,
    Runtime,
    find_test_cgroups,
    remove_cgroup,
    unique_id,
)

RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.root)


@pytest.fixture(autouse=True)
def _needs_root(request):
    if request.node.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: creates namespaces, mounts and cgroups")
    if not os.path.exists(BUSYBOX):
        pytest.skip(f"needs a static busybox at {BUSYBOX} for the container rootfs")


@pytest.fixture(scope="session")
def workdir():
    """A traversable (0711) parent for bundles: user-namespaced containers must reach them."""
    directory = Path(tempfile.mkdtemp(prefix=ID_PREFIX + "work-"))
    os.chmod(directory, 0o711)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["corral", "runc"])
def runtime(request, workdir):
    name = request.param
    if name == "runc":
        if RUNC is None:
            pytest.skip("runc is not installed")
        binary = RUNC
    else:
        if not os.path.exists(CORRAL_RUNTIME):
            pytest.skip(f"{CORRAL_RUNTIME} is not installed (pip install -e .)")
        binary = CORRAL_RUNTIME
    root = Path(tempfile.mkdtemp(prefix=f"{name}-root-", dir=workdir))
    rt = Runtime(name, binary, root)
    before = set(find_test_cgroups())
    yield rt
    rt.cleanup()
    for path in find_test_cgroups():
        # only this test's containers: other test runs may be going on in parallel
        if path not in before and any(cid in str(path) for cid in rt.created):
            remove_cgroup(path)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_bundle(workdir):
    """Factory: make_bundle() -> a new Bundle with a unique corral-test- id."""
    made: list[Path] = []

    def factory(label: str = "") -> Bundle:
        container_id = unique_id(label)
        path = workdir / container_id
        made.append(path)
        return Bundle(path, container_id)

    yield factory
    for path in made:
        _remove_tree(path)


@pytest.fixture
def bundle(make_bundle):
    return make_bundle()


def _remove_tree(path: Path) -> None:
    """rm -rf that first makes everything writable again (chattr-free: just chmod)."""
    if not path.exists():
        return
    subprocess.run(["chmod", "-R", "u+rwx", str(path)], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)
