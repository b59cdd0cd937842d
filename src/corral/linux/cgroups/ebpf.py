"""cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program, loaded and
attached with bpf(2) through ctypes (runc's libcontainer/cgroups/devices/ebpf and
devicefilter, in Python).

The kernel calls the program with a `struct bpf_cgroup_dev_ctx`:
  u32 access_type   (low 16 bits: BPF_DEVCG_DEV_BLOCK 1 / CHAR 2;
                     high 16 bits: BPF_DEVCG_ACC_MKNOD 1 / READ 2 / WRITE 4)
  u32 major, u32 minor
and it returns 1 to allow, 0 to deny. The program checks the rules last to
first (the last matching rule wins, as with v1's devices.allow/deny lines) and
denies what no rule matches. Attaching with BPF_F_ALLOW_MULTI, then detaching
the programs that were there before, replaces the filter without a window in
which every device is allowed.
"""

from __future__ import annotations

import ctypes
import os
import struct

from corral.errors import InvalidArgument, SystemFailure

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# Instruction classes and operations (linux/bpf_common.h, linux/bpf.h).
_LDX_MEM_W = 0x61
_ALU32_AND_K = 0x54
_ALU32_RSH_K = 0x74
_ALU32_MOV_K = 0xB4
_ALU32_MOV_X = 0xBC
_JMP_JNE_K = 0x55
_JMP_JNE_X = 0x5D
_JMP_EXIT = 0x95

_TYPES = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}

_libc = ctypes.CDLL(None, use_errno=True)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: dict) -> tuple[list[bytes], bool]:
    """Instructions for one rule, and whether it matches everything. Each failed test
    jumps past the block's end, to the next (earlier) rule."""
    steps: list[tuple[str, tuple[int, int, int, int]]] = []  # ("op" | "jump", insn)
    kind = rule.get("type") or "a"
    if kind != "a":
        steps.append(("jump", (_JMP_JNE_K, 2, 0, _TYPES[kind])))
    mask = sum(_ACCESS[c] for c in set(rule.get("access") or "rwm"))
    if mask != 7:
        # R1 = R3 & mask; if R1 != R3 the request asks for more than the rule covers
        steps.append(("op", (_ALU32_MOV_X, 1, 3, 0)))
        steps.append(("op", (_ALU32_AND_K, 1, 0, mask)))
        steps.append(("jump", (_JMP_JNE_X, 1, 3, 0)))
    if kind != "a":
        for register, key in ((4, "major"), (5, "minor")):
            if rule.get(key) not in (None, -1):
                steps.append(("jump", (_JMP_JNE_K, register, 0, rule[key])))
    total = len(steps) + 2
    out = []
    for index, (what, (code, dst, src, imm)) in enumerate(steps):
        off = total - index - 1 if what == "jump" else 0
        out.append(_insn(code, dst=dst, src=src, off=off, imm=imm))
    out.append(_insn(_ALU32_MOV_K, dst=0, imm=1 if rule.get("allow") else 0))
    out.append(_insn(_JMP_EXIT))
    return out, not steps


def compile_rules(rules: list[dict]) -> bytes:
    """The program for `rules` (dicts with type, major, minor, access, allow)."""
    for index, rule in enumerate(rules):
        if (rule.get("type") or "a") not in ("a", "b", "c"):
            raise InvalidArgument(f"linux.resources.devices[{index}].type: {rule.get('type')!r}")
    program = [
        _insn(_LDX_MEM_W, dst=2, src=1, off=0),   # R2 = ctx->access_type
        _insn(_ALU32_AND_K, dst=2, imm=0xFFFF),   # R2 = device type
        _insn(_LDX_MEM_W, dst=3, src=1, off=0),
        _insn(_ALU32_RSH_K, dst=3, imm=16),       # R3 = requested access
        _insn(_LDX_MEM_W, dst=4, src=1, off=4),   # R4 = major
        _insn(_LDX_MEM_W, dst=5, src=1, off=8),   # R5 = minor
    ]
    for rule in reversed(rules):
        block, matches_all = _rule_block(rule)
        program.extend(block)
        if matches_all:  # earlier rules can never be reached (the verifier refuses dead code)
            return b"".join(program)
    program.extend([_insn(_ALU32_MOV_K, dst=0, imm=0), _insn(_JMP_EXIT)])
    return b"".join(program)


def _bpf(command: int, attr: ctypes.Array) -> int:
    result = _libc.syscall(_BPF_SYSCALL, ctypes.c_int(command), attr,
                           ctypes.c_uint(ctypes.sizeof(attr)))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({command}): {os.strerror(err)}")
    return result


def load(program: bytes) -> int:
    """BPF_PROG_LOAD; returns the program's fd. The verifier log goes into the error."""
    insns = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license_), 1, len(log),
                     ctypes.addressof(log))
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        detail = log.value.decode(errors="replace").strip()[-400:]
        raise SystemFailure(f"linux.resources.devices: the kernel refused the eBPF device "
                            f"filter: {exc.strerror}{': ' + detail if detail else ''}") from None


def query(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to the cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0,
                     ctypes.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def _prog_fd(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def _attach(cgroup_fd: int, prog_fd: int, command: int, flags: int) -> None:
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    _bpf(command, attr)


def attach_device_filter(directory: str, rules: list[dict]) -> None:
    """Load the program for `rules` and make it the cgroup's only device filter."""
    program = compile_rules(rules)
    cgroup_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    prog_fd = -1
    try:
        try:
            old = query(cgroup_fd)
        except OSError:
            old = []
        prog_fd = load(program)
        try:
            _attach(cgroup_fd, prog_fd, BPF_PROG_ATTACH, BPF_F_ALLOW_MULTI)
        except OSError as exc:
            raise SystemFailure(f"linux.resources.devices: cannot attach the eBPF device filter "
                                f"to {directory}: {exc.strerror}") from None
        for prog_id in old:
            try:
                old_fd = _prog_fd(prog_id)
            except OSError:
                continue
            try:
                _attach(cgroup_fd, old_fd, BPF_PROG_DETACH, 0)
            except OSError:
                pass
            finally:
                os.close(old_fd)
    finally:
        if prog_fd >= 0:
            os.close(prog_fd)
        os.close(cgroup_fd)
