"""corral.linux.syscalls helpers that need no root."""

from __future__ import annotations

import os

from corral.linux import capabilities, libc
from corral.linux import syscalls as sc


def test_glibc_tid_field_holds_our_tid_and_is_kept():
    sc._tid_field = (0, 0)
    address = sc._glibc_tid_field()
    assert libc.c_int.from_address(address).value == os.getpid()  # the main thread
    assert sc._tid_field[1] == address
    assert sc._glibc_tid_field() == address


def test_last_cap_is_the_kernels():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert capabilities.last_cap() == int(f.read())
    assert capabilities.last_cap() == capabilities.last_cap()
