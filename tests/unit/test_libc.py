"""corral.linux.libc: ctypes' LP64 types and CDLL, rebuilt on `_ctypes` alone."""

from __future__ import annotations

import ctypes
import os

from corral.linux import libc


def test_types_match_ctypes():
    for name in ("c_int", "c_uint", "c_long", "c_ulong", "c_ushort", "c_char", "c_char_p",
                 "c_void_p", "c_uint32", "c_uint64", "c_size_t"):
        ours, theirs = getattr(libc, name), getattr(ctypes, name)
        assert libc.sizeof(ours) == ctypes.sizeof(theirs), name
        assert ours._type_ == theirs._type_, name


def test_structure_layout_matches_ctypes():
    class Ours(libc.Structure):
        _fields_ = (("a", libc.c_ushort), ("b", libc.c_void_p), ("c", libc.c_uint32))

    class Theirs(ctypes.Structure):
        _fields_ = (("a", ctypes.c_ushort), ("b", ctypes.c_void_p), ("c", ctypes.c_uint32))

    assert libc.sizeof(Ours) == ctypes.sizeof(Theirs)
    assert Ours.b.offset == Theirs.b.offset and Ours.c.offset == Theirs.c.offset


def test_library_calls_libc_and_reports_errno():
    library = libc.Library(None)
    assert library.getpid() == os.getpid()
    library.chdir.argtypes = [libc.c_char_p]
    assert library.chdir(b"/nonexistent/corral-libc-test") == -1
    assert libc.get_errno() == 2  # ENOENT


def test_python_api_library():
    api = libc.Library(None, python_api=True)
    assert api.Py_IsInitialized() == 1
