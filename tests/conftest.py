"""Session-wide test settings shared by every suite.

The engine's default network is a host resource (a bridge, a subnet, host-local's
lease directory): tests use their own — `corral-test-def` on bridge `corral-test-d0`,
10.99.200.0/24 — through a config file in $CORRAL_CONFIG, so they never touch a real
`corral0`. The bridge is removed at the end of the session if no container uses it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEST_DEFAULT_NETWORK = "corral-test-def"
TEST_DEFAULT_BRIDGE = "corral-test-d0"
TEST_DEFAULT_SUBNET = "10.99.200.0/24"
_CONFIG = f"""\
[network]
default_network = "{TEST_DEFAULT_NETWORK}"
default_subnet = "{TEST_DEFAULT_SUBNET}"
default_bridge = "{TEST_DEFAULT_BRIDGE}"
"""


def pytest_configure(config):
    if os.environ.get("CORRAL_CONFIG"):
        return
    directory = Path(tempfile.mkdtemp(prefix="corral-test-config-"))
    path = directory / "corral.conf"
    path.write_text(_CONFIG)
    os.environ["CORRAL_CONFIG"] = str(path)
    config._corral_config_dir = directory


def pytest_unconfigure(config):
    directory = getattr(config, "_corral_config_dir", None)
    if directory is None:
        return
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
    try:
        from corral.network.networks import remove_bridge, remove_leases
    except ImportError:
        return
    remove_bridge(TEST_DEFAULT_BRIDGE)
    remove_leases(TEST_DEFAULT_NETWORK)
    if not os.path.exists(f"/sys/class/net/{TEST_DEFAULT_BRIDGE}"):
        from corral.network import isolation

        isolation.remove(TEST_DEFAULT_BRIDGE)
