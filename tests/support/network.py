"""What the host shows of CNI attachments, for tests that check nothing is left:
a bridge's ports and host-local's leases of a network."""

from __future__ import annotations

import os


def veths_on(bridge: str) -> list[str]:
    """The interfaces attached to `bridge` (empty if there is no such bridge)."""
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except FileNotFoundError:
        return []


def leases(network: str) -> list[str]:
    """host-local's leased addresses of `network` (its lock files are not leases)."""
    try:
        return sorted(n for n in os.listdir(f"/var/lib/cni/networks/{network}")
                      if n[0].isdigit() or ":" in n)
    except FileNotFoundError:
        return []
