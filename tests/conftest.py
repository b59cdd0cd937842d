"""Session-wide test settings shared by every suite.

The engine's default network is a host resource (a bridge, a subnet, host-local's
lease directory), so each test session gets its own, never a real `corral0` and never
another session's (sessions run side by side on a shared machine): a network
`corral-test-def-XXX` on bridge `corral-test-XXX` with a /24 from 10.99.200-254 that
no route on the host uses yet, written to a config file in $CORRAL_CONFIG and exported
as $CORRAL_TEST_DEFAULT_NETWORK / _BRIDGE / _SUBNET for the tests. The bridge and
its leases are removed at the end of the session.

Every store root gets a conmon socket directory `/run/corral/s-<hash of the root>`
(engine/conmon.py); the tests' roots are temp directories, so the ones made during
the session are removed at its end when nothing in them points anywhere any more, and
so are Corral's iptables chains if the session made them and no bridge uses them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from pathlib import Path


def _free_subnet() -> str:
    try:
        routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"],
                                capture_output=True, text=True, check=False).stdout
    except OSError:
        routes = ""
    start = 200 + secrets.randbelow(40)
    for third in list(range(start, 255)) + list(range(200, start)):
        if f"10.99.{third}.0/24" not in routes:
            return f"10.99.{third}.0/24"
    return f"10.99.{start}.0/24"


SOCKET_DIRS = Path("/run/corral")


def _socket_dirs() -> set[str]:
    try:
        return {p.name for p in SOCKET_DIRS.iterdir() if p.name.startswith("s-")}
    except OSError:
        return set()


def _corral_chains() -> bool:
    try:
        from corral.network import isolation
    except ImportError:
        return True
    return isolation.chains_exist()


def pytest_configure(config):
    config._corral_socket_dirs = _socket_dirs()
    config._corral_chains_before = _corral_chains()
    if os.environ.get("CORRAL_CONFIG"):
        return
    tag = secrets.token_hex(2)[:3]
    network, bridge, subnet = f"corral-test-def-{tag}", f"corral-test-{tag}", _free_subnet()
    directory = Path(tempfile.mkdtemp(prefix="corral-test-config-"))
    path = directory / "corral.conf"
    path.write_text(f'[network]\ndefault_network = "{network}"\n'
                    f'default_subnet = "{subnet}"\ndefault_bridge = "{bridge}"\n')
    os.environ.update(CORRAL_CONFIG=str(path), CORRAL_TEST_DEFAULT_NETWORK=network,
                      CORRAL_TEST_DEFAULT_BRIDGE=bridge, CORRAL_TEST_DEFAULT_SUBNET=subnet)
    config._corral_test_network = (directory, network, bridge, subnet)


def pytest_unconfigure(config):
    before = getattr(config, "_corral_socket_dirs", None)
    if before is not None:
        for name in _socket_dirs() - before:
            directory = SOCKET_DIRS / name
            try:
                for link in directory.iterdir():  # conmon's links to bundles now gone
                    if link.is_symlink() and not link.exists():
                        link.unlink()
                directory.rmdir()  # only if empty: a store still in use keeps it
            except OSError:
                pass
    made = getattr(config, "_corral_test_network", None)
    if made is None:
        return
    import shutil

    directory, network, bridge, subnet = made
    shutil.rmtree(directory, ignore_errors=True)
    try:
        from corral.network import isolation
        from corral.network.networks import remove_bridge, remove_leases
    except ImportError:
        return
    remove_bridge(bridge)
    remove_leases(network)
    if not os.path.exists(f"/sys/class/net/{bridge}"):
        isolation.remove(bridge, [subnet])
    if not config._corral_chains_before:  # made by this session: gone once unused
        isolation.remove_chains_if_unused()
