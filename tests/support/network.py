"""What the host shows of CNI attachments, for tests that check nothing is left:
a bridge's ports and host-local's leases of a network."""

from __future__ import annotations

import os
import time


def veths_on(bridge: str, *, gone: bool = False, timeout: float = 3.0) -> list[str]:
    """The interfaces attached to `bridge` (empty if there is no such bridge).

    `gone=True` where none should be left: corral removes a container's netns before the
    CNI DEL, and the kernel destroys the netns and its veth pairs in the background (tens
    of ms), so this waits up to `timeout` for the list to empty before returning it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
        except FileNotFoundError:
            found = []
        if not gone or not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


def leases(network: str) -> list[str]:
    """host-local's leased addresses of `network` (its lock files are not leases)."""
    try:
        return sorted(n for n in os.listdir(f"/var/lib/cni/networks/{network}")
                      if n[0].isdigit() or ":" in n)
    except FileNotFoundError:
        return []
