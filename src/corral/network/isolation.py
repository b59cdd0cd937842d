"""The host's forwarding rules for Corral's bridges, per bridge rather than per container
(docker's model): networks isolated from each other (docker's DOCKER-ISOLATION-STAGE-1/2)
and containers' traffic accepted even where the FORWARD policy is DROP — the job the
CNI `firewall` plugin does with two rules per container, which cost two plugin runs on
every start and stop.

    FORWARD -j CORRAL-FORWARD                                   (inserted first)
    CORRAL-FORWARD:     -j CORRAL-ISOLATION-1                   (first rule)
                        -o <bridge> -j ACCEPT                   (per network)
                        -i <bridge> -j ACCEPT                   (per network; internal:
                                                                 -i <bridge> -o <bridge>)
    CORRAL-ISOLATION-1: -i <bridge> ! -o <bridge> -j CORRAL-ISOLATION-2   (per network)
    CORRAL-ISOLATION-2: -o <bridge> -j DROP                               (per network)
    nat POSTROUTING -j CORRAL-POSTROUTING
    CORRAL-POSTROUTING: -s <subnet> ! -o <bridge> -j MASQUERADE           (per subnet,
                                                                           not internal)

The last is the bridge plugin's `ipMasq` done once per network (docker's rule) instead
of a chain and three rules per container, made and removed on every start and stop.

Rules are added when a container joins a network (idempotent: `iptables -C` first) and
removed with the network. A marker in /run (a tmpfs, empty after a reboot) saves the
iptables calls once a bridge's rules were ensured since boot; `network reload` forces.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

MARKERS = "/run/corral/isolation"

FORWARD = "CORRAL-FORWARD"
POSTROUTING = "CORRAL-POSTROUTING"
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


def _accepts(bridge: str, internal: bool) -> list[list[str]]:
    if internal:
        return [["-i", bridge, "-o", bridge, "-j", "ACCEPT"]]
    return [["-o", bridge, "-j", "ACCEPT"], ["-i", bridge, "-j", "ACCEPT"]]


def _masquerade(bridge: str, subnet: str) -> list[str]:
    return ["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"]


def ensure(bridge: str, *, internal: bool = False, subnets: list[str] | tuple[str, ...] = (),
           force: bool = False) -> None:
    """The chains, the FORWARD and POSTROUTING jumps and this bridge's rules."""
    marker = os.path.join(MARKERS, bridge)
    if not force and os.path.exists(marker):
        return
    if not internal and subnets:
        if not _iptables("-t", "nat", "-n", "-L", POSTROUTING):
            _iptables("-t", "nat", "-N", POSTROUTING)
        if not _iptables("-t", "nat", "-C", "POSTROUTING", "-j", POSTROUTING):
            _iptables("-t", "nat", "-A", "POSTROUTING", "-j", POSTROUTING)
        for subnet in subnets:
            rule = _masquerade(bridge, subnet)
            if not _iptables("-t", "nat", "-C", POSTROUTING, *rule):
                _iptables("-t", "nat", "-A", POSTROUTING, *rule)
    for chain in (FORWARD, STAGE1, STAGE2):
        if not _iptables("-n", "-L", chain):
            _iptables("-N", chain)
    while _iptables("-D", "FORWARD", "-j", STAGE1):  # the layout before CORRAL-FORWARD
        pass
    _ensure_rule("FORWARD", ["-j", FORWARD], first=True)
    _ensure_rule(FORWARD, ["-j", STAGE1], first=True)
    _ensure_rule(STAGE1, ["-i", bridge, "!", "-o", bridge, "-j", STAGE2])
    _ensure_rule(STAGE2, ["-o", bridge, "-j", "DROP"])
    for rule in _accepts(bridge, internal):
        _ensure_rule(FORWARD, rule)
    with contextlib.suppress(OSError):
        os.makedirs(MARKERS, exist_ok=True)
        with open(marker, "w"):
            pass


def chains_exist() -> bool:
    """Are Corral's chains in the filter table (any bridge ensured since they were)?"""
    return _iptables("-n", "-L", FORWARD)


def remove_chains_if_unused() -> bool:
    """Remove Corral's chains and their jumps if no bridge has rules in them any more
    (for a test session that made them: `remove` leaves them, as CNI leaves its own).
    True if they are gone."""
    def rules(table: str, chain: str) -> list[str]:
        try:
            out = subprocess.run(["iptables", "-w", "10", "-t", table, "-S", chain],
                                 capture_output=True, text=True, check=False, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return ["?"]
        return [line for line in out.stdout.splitlines() if line.startswith("-A ")] \
            if out.returncode == 0 else []

    if (rules("filter", FORWARD) not in ([], [f"-A {FORWARD} -j {STAGE1}"])
            or rules("filter", STAGE1) or rules("filter", STAGE2)
            or rules("nat", POSTROUTING)):
        return False
    while _iptables("-D", "FORWARD", "-j", FORWARD):
        pass
    for chain in (FORWARD, STAGE1, STAGE2):
        _iptables("-F", chain)
        _iptables("-X", chain)
    while _iptables("-t", "nat", "-D", "POSTROUTING", "-j", POSTROUTING):
        pass
    _iptables("-t", "nat", "-X", POSTROUTING)
    with contextlib.suppress(OSError):  # no bridge has rules: every marker is stale
        for name in os.listdir(MARKERS):
            os.unlink(os.path.join(MARKERS, name))
    return not chains_exist()


def remove(bridge: str, subnets: list[str] | tuple[str, ...] = ()) -> None:
    """This bridge's rules (the chains stay, as CNI's own chains do)."""
    rules = [(STAGE1, ["-i", bridge, "!", "-o", bridge, "-j", STAGE2]),
             (STAGE2, ["-o", bridge, "-j", "DROP"])]
    rules += [(FORWARD, r) for internal in (False, True) for r in _accepts(bridge, internal)]
    for chain, rule in rules:
        while _iptables("-D", chain, *rule):
            pass
    for subnet in subnets:
        while _iptables("-t", "nat", "-D", POSTROUTING, *_masquerade(bridge, subnet)):
            pass
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(MARKERS, bridge))
