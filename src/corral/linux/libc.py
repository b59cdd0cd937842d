"""libc functions through `_ctypes`, the C half of ctypes, without `ctypes` itself.

`import ctypes` costs ~3 ms (it imports `types`, `struct` and the byte-order
structures, and checks every type's size), paid by every `create`: the init
calls mount(2), unshare(2), setns(2), prctl(2) and syscall(2) through libc.
The C types here are those ctypes defines for LP64 Linux (x86_64, aarch64),
built on the same `_ctypes` base classes with the same type codes, so they
convert arguments exactly as ctypes does. `Library` is ctypes.CDLL with
use_errno (or PyDLL, for the interpreter's own API). Code that needs more of
ctypes (libseccomp, eBPF) imports ctypes itself.
"""

from __future__ import annotations

import _ctypes
from _ctypes import Structure, addressof, byref, get_errno, sizeof

__all__ = ["Library", "Structure", "addressof", "byref", "c_char", "c_char_p", "c_int",
           "c_long", "c_size_t", "c_uint", "c_uint32", "c_uint64", "c_ulong", "c_ushort", "c_void_p",
           "get_errno", "sizeof"]


class c_int(_ctypes._SimpleCData):  # ctypes' names and type codes
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_ushort(_ctypes._SimpleCData):
    _type_ = "H"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class c_char_p(_ctypes._SimpleCData):
    _type_ = "z"


class c_void_p(_ctypes._SimpleCData):
    _type_ = "P"


c_uint32 = c_uint  # LP64: as ctypes defines them
c_uint64 = c_ulong
c_size_t = c_ulong


class Library:
    """A shared library's functions as attributes (ctypes.CDLL(name, use_errno=True);
    with `python_api`, ctypes.PyDLL: the GIL is held and Python errors propagate)."""

    def __init__(self, name: str | None, python_api: bool = False) -> None:
        flags = _ctypes.FUNCFLAG_CDECL | (_ctypes.FUNCFLAG_PYTHONAPI if python_api
                                          else _ctypes.FUNCFLAG_USE_ERRNO)

        class Function(_ctypes.CFuncPtr):
            _flags_ = flags
            _restype_ = c_int

        self._function = Function
        self._handle = _ctypes.dlopen(name, _ctypes.RTLD_LOCAL)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        function = self._function((name, self))
        setattr(self, name, function)
        return function
