"""Isolation between networks (docker's DOCKER-ISOLATION-STAGE-1/2): a container on one
bridge cannot reach containers on another bridge through the host's routing, though
traffic to the outside (NAT) still flows.

    FORWARD -j CORRAL-ISOLATION-1
    CORRAL-ISOLATION-1: -i <bridge> ! -o <bridge> -j CORRAL-ISOLATION-2   (per network)
    CORRAL-ISOLATION-2: -o <bridge> -j DROP                               (per network)

Rules are added when a container joins a network (idempotent: `iptables -C` first) and
removed with the network. A marker in /run (a tmpfs, empty after a reboot) saves the
iptables calls once a bridge's rules were ensured since boot.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

MARKERS = "/run/corral/isolation"

STAGE1 = "CORRAL-ISOLATION-1"
STAGE2 = "CORRAL-ISOLATION-2"


def _iptables(*args: str) -> bool:
    try:
        result = subprocess.run(["iptables", "-w", "10", *args], capture_output=True,
                                check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def _ensure_rule(chain: str, rule: list[str], *, first: bool = False) -> None:
    if not _iptables("-C", chain, *rule):
        _iptables("-I" if first else "-A", chain, *rule)


def ensure(bridge: str, *, force: bool = False) -> None:
    """The chains, the FORWARD jump and this bridge's two rules."""
    marker = os.path.join(MARKERS, bridge)
    if not force and os.path.exists(marker):
        return
    for chain in (STAGE1, STAGE2):
        if not _iptables("-n", "-L", chain):
            _iptables("-N", chain)
    _ensure_rule("FORWARD", ["-j", STAGE1], first=True)
    _ensure_rule(STAGE1, ["-i", bridge, "!", "-o", bridge, "-j", STAGE2])
    _ensure_rule(STAGE2, ["-o", bridge, "-j", "DROP"])
    with contextlib.suppress(OSError):
        os.makedirs(MARKERS, exist_ok=True)
        with open(marker, "w"):
            pass


def remove(bridge: str) -> None:
    """This bridge's rules (the chains stay, as CNI's own chains do)."""
    while _iptables("-D", STAGE1, "-i", bridge, "!", "-o", bridge, "-j", STAGE2):
        pass
    while _iptables("-D", STAGE2, "-o", bridge, "-j", "DROP"):
        pass
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(MARKERS, bridge))
