"""Seccomp filters (config-linux.md#seccomp) built with libseccomp through ctypes.

Three layers, so the first two need neither root nor the library:

* `validate(section)` checks what the JSON schema cannot: errnoRet only with
  SCMP_ACT_ERRNO/SCMP_ACT_TRACE, argument indexes below 6, SCMP_ACT_NOTIFY
  rules (never the default action, never `write`, only with a listenerPath).
* `plan(section)` translates the section into libseccomp values: one `Rule`
  per (syscall name, argument set). As runc does, a syscall whose args name
  the same index twice becomes one rule per comparison (they are ORed), and a
  rule with the default action is dropped (libseccomp refuses it).
* `compile(section, cache_dir)` opens libseccomp.so.2, builds the filter context
  (seccomp_init, seccomp_arch_add, seccomp_rule_add_array, seccomp_attr_set),
  generates its BPF (seccomp_export_bpf) and returns a `Program`, whose `load()`
  installs it with seccomp(2) (the flags seccomp_load would pass) and hands back
  the SCMP_ACT_NOTIFY listener fd, if any. Generated programs are cached in
  `cache_dir` (the runtime's root): building and generating podman's profile takes
  ~20 ms, reading it back well under one.

The runtime compiles the filter before it forks the container's processes: the
library is mapped and the program generated while the host's filesystem is still
reachable (after pivot_root, libseccomp.so is not), and a bad profile fails
`create`/`exec` before anything exists. The container's process calls `load()`
as its last step before execve (or before dropping capabilities when
noNewPrivileges is false: installing a filter without no_new_privs needs
CAP_SYS_ADMIN); no_new_privs is the runtime's to set, from process.noNewPrivileges.

Syscall names libseccomp does not know are skipped, as runc does: profiles list
syscalls of newer kernels and other architectures.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument, SystemFailure, Unavailable

# <seccomp.h>: action values; ERRNO and TRACE carry 16 bits of data.
_ACT_KILL_THREAD = 0x00000000
_ACT_KILL_PROCESS = 0x80000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_NOTIFY = 0x7FC00000
_ACT_ALLOW = 0x7FFF0000

ACTIONS = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_ERRNO": _ACT_ERRNO,
    "SCMP_ACT_TRACE": _ACT_TRACE,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
    "SCMP_ACT_LOG": _ACT_LOG,
    "SCMP_ACT_NOTIFY": _ACT_NOTIFY,
}
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
EPERM = 1
MAX_ARGS = 6  # syscalls take at most six arguments

# enum scmp_compare
OPERATORS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

# OCI name -> libseccomp's name for seccomp_arch_resolve_name(3).
ARCHITECTURES = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64", "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_MIPS": "mips", "SCMP_ARCH_MIPS64": "mips64", "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel", "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc", "SCMP_ARCH_PPC64": "ppc64", "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390", "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc", "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64", "SCMP_ARCH_SH": "sh", "SCMP_ARCH_SHEB": "sheb",
}

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_API_SYSRAWRC = 9
_ATTR_CTL_WAITKILL = 10  # libseccomp >= 2.6

# seccomp(2) flags (linux/seccomp.h), as seccomp_load passes them; TSYNC is not set by
# libseccomp for us either (its attribute is left off: the process is single-threaded)
_KERNEL_FLAGS = {
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
_FLAG_NEW_LISTENER = 8

# OCI flag -> (filter attribute, lowest libseccomp version). TSYNC has no
# attribute here: the container's process is single-threaded when it loads the
# filter (runc ignores the flag for the same reason).
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": (None, (2, 0)),
    "SECCOMP_FILTER_FLAG_LOG": (_ATTR_CTL_LOG, (2, 4)),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (_ATTR_CTL_SSB, (2, 5)),
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": (_ATTR_CTL_WAITKILL, (2, 6)),
}

FIELD = "linux.seccomp"


class SeccompError(InvalidArgument):
    """The seccomp section is invalid or names something libseccomp cannot do."""


class SeccompUnavailable(Unavailable):
    """libseccomp.so.2 cannot be loaded on this host."""


class SeccompLoadFailed(SystemFailure):
    pass


# -- validation and translation (no library needed) ----------------------------------
class Rule:
    """One seccomp_rule_add_array call: `syscall` gets `action` when every comparison
    in `args` ((index, operator, datum_a, datum_b), ANDed) holds."""

    __slots__ = ("action", "args", "field", "syscall")

    def __init__(self, syscall: str, action: int, args: tuple, field: str) -> None:
        self.syscall = syscall
        self.action = action
        self.args = args
        self.field = field

    def __repr__(self) -> str:
        return f"Rule({self.syscall!r}, {self.action:#x}, {self.args!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Rule) and (self.syscall, self.action, self.args)
                == (other.syscall, other.action, other.args))


class Plan:
    """The seccomp section as libseccomp values."""

    __slots__ = ("architectures", "default_action", "flags", "listener_metadata",
                 "listener_path", "rules", "uses_notify")

    def __init__(self) -> None:
        self.default_action = _ACT_ALLOW
        self.architectures: list[tuple[str, str]] = []  # (field, libseccomp name)
        self.flags: list[tuple[str, str]] = []  # (field, OCI flag)
        self.rules: list[Rule] = []
        self.listener_path: str | None = None
        self.listener_metadata: str | None = None
        self.uses_notify = False


def action_value(name: str, errno_ret: int | None, field: str) -> int:
    """The libseccomp action for an OCI action name and its errnoRet."""
    base = ACTIONS.get(name)
    if base is None:
        raise SeccompError(f"{field}: unknown action {name!r}")
    if name in _WITH_ERRNO:
        errno = EPERM if errno_ret is None else errno_ret
        if not isinstance(errno, int) or isinstance(errno, bool) or not 0 <= errno <= 0xFFFF:
            raise SeccompError(f"{field}: errno {errno!r} is not an integer in 0..65535")
        return base | errno
    if errno_ret is not None:
        raise SeccompError(f"{field}: errnoRet is only valid with SCMP_ACT_ERRNO or "
                           f"SCMP_ACT_TRACE, not {name}")
    return base


# The section `validate` last checked and its plan: `compile` of that same object (the
# runtime's create validates the config, then compiles it) does not plan it again.
_validated: tuple[dict, Plan] | None = None


def validate(section: dict) -> None:
    """Check the whole section; raise SeccompError naming the first bad field."""
    global _validated
    _validated = None
    _validated = (section, plan(section))


def plan(section: dict) -> Plan:
    if not isinstance(section, dict):
        raise SeccompError(f"{FIELD}: expected an object")
    result = Plan()
    default = section.get("defaultAction")
    if default is None:
        raise SeccompError(f"{FIELD}.defaultAction: is required")
    if default == "SCMP_ACT_NOTIFY":
        raise SeccompError(f"{FIELD}.defaultAction: SCMP_ACT_NOTIFY cannot be the default "
                           "action")
    result.default_action = action_value(default, section.get("defaultErrnoRet"),
                                         f"{FIELD}.defaultAction")
    for index, arch in enumerate(section.get("architectures") or []):
        field = f"{FIELD}.architectures[{index}]"
        if arch not in ARCHITECTURES:
            raise SeccompError(f"{field}: unknown architecture {arch!r}")
        result.architectures.append((field, ARCHITECTURES[arch]))
    for index, flag in enumerate(section.get("flags") or []):
        if flag not in FLAGS:
            raise SeccompError(f"{FIELD}.flags[{index}]: unknown flag {flag!r}")
        result.flags.append((f"{FIELD}.flags[{index}]", flag))
    for index, call in enumerate(section.get("syscalls") or []):
        field = f"{FIELD}.syscalls[{index}]"
        names = call.get("names") or []
        if not names:
            raise SeccompError(f"{field}.names: must name at least one syscall")
        action_name = call.get("action")
        action = action_value(action_name, call.get("errnoRet"), f"{field}.action")
        if action_name == "SCMP_ACT_NOTIFY":
            result.uses_notify = True
            if "write" in names:
                raise SeccompError(f"{field}: SCMP_ACT_NOTIFY cannot be used for the write "
                                   "syscall (the runtime needs it to send the listener fd)")
        comparisons = []
        counts = [0] * MAX_ARGS
        for arg_index, arg in enumerate(call.get("args") or []):
            arg_field = f"{field}.args[{arg_index}]"
            position = arg.get("index")
            if not isinstance(position, int) or not 0 <= position < MAX_ARGS:
                raise SeccompError(f"{arg_field}.index: {position!r} is not an argument "
                                   f"index (0..{MAX_ARGS - 1})")
            operator = OPERATORS.get(arg.get("op"))
            if operator is None:
                raise SeccompError(f"{arg_field}.op: unknown operator {arg.get('op')!r}")
            values = []
            for key in ("value", "valueTwo"):
                value = arg.get(key, 0)
                if (not isinstance(value, int) or isinstance(value, bool)
                        or not 0 <= value < 1 << 64):
                    raise SeccompError(f"{arg_field}.{key}: {value!r} is not a uint64")
                values.append(value)
            counts[position] += 1
            comparisons.append((position, operator, values[0], values[1]))
        if action == result.default_action:
            continue  # libseccomp refuses rules with the default action; runc skips them
        # runc's rule: the same argument compared twice means one rule per comparison
        groups = ([(c,) for c in comparisons] if max(counts) > 1 else [tuple(comparisons)])
        for name in names:
            if not isinstance(name, str) or not name:
                raise SeccompError(f"{field}.names: {name!r} is not a syscall name")
            for group in groups:
                result.rules.append(Rule(name, action, group, field))
    if result.uses_notify and not section.get("listenerPath"):
        raise SeccompError(f"{FIELD}.listenerPath: is required when a rule uses "
                           "SCMP_ACT_NOTIFY")
    if section.get("listenerMetadata") and not section.get("listenerPath"):
        raise SeccompError(f"{FIELD}.listenerMetadata: must not be set without listenerPath")
    if section.get("listenerPath"):
        if not os.path.isabs(section["listenerPath"]):
            raise SeccompError(f"{FIELD}.listenerPath: {section['listenerPath']!r} is not an "
                               "absolute path")
        result.listener_path = section["listenerPath"]
        result.listener_metadata = section.get("listenerMetadata")
    return result


# -- libseccomp ------------------------------------------------------------------------
_lib = None


def library():
    """libseccomp.so.2 through ctypes, opened once (before any pivot_root)."""
    global _lib
    if _lib is not None:
        return _lib
    import ctypes

    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"{FIELD}: cannot load libseccomp.so.2 ({exc}); install "
                                 "libseccomp2") from None

    class ArgCmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint),
                    ("micro", ctypes.c_uint)]

    ctx = ctypes.c_void_p
    lib.seccomp_version.restype = ctypes.POINTER(Version)
    lib.seccomp_version.argtypes = []
    lib.seccomp_init.restype = ctx
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = [ctx]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.restype = ctypes.c_int
    lib.seccomp_arch_add.argtypes = [ctx, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctx, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_attr_set.argtypes = [ctx, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctx, ctypes.c_int]
    lib.ArgCmp = ArgCmp
    version = lib.seccomp_version().contents
    lib.version = (version.major, version.minor, version.micro)
    _lib = lib
    return lib


def version() -> tuple[int, int, int]:
    return library().version


def _version_text(lib) -> str:
    return ".".join(map(str, lib.version))


class Program:
    """A filter as the kernel takes it: the BPF program libseccomp generated and the
    seccomp(2) flags. `load()` installs it in the calling process; the generation (the
    slow part, ~10 ms for podman's profile) happened before, or came from the cache."""

    def __init__(self, plan_: Plan, bpf: bytes, flags: int) -> None:
        self.plan = plan_
        self.bpf = bpf
        self.flags = flags
        self.listener: int | None = None  # connected socket, see connect_listener()

    def connect_listener(self) -> None:
        """Connect to listenerPath now, while the host's filesystem is reachable."""
        if not self.plan.uses_notify or self.plan.listener_path is None:
            return
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.plan.listener_path)
        except OSError as exc:
            sock.close()
            raise SeccompError(f"{FIELD}.listenerPath: cannot connect to "
                               f"{self.plan.listener_path}: {exc.strerror or exc}") from None
        self.listener = sock.detach()

    def load(self) -> int | None:
        """seccomp(SECCOMP_SET_MODE_FILTER): install the filter. Returns the notify fd."""
        from corral.linux import syscalls

        try:
            fd = syscalls.seccomp_set_mode_filter(self.bpf, self.flags)
        except OSError as exc:
            raise SeccompLoadFailed(f"{FIELD}: the kernel refused the filter: "
                                    f"{exc.strerror}") from None
        return fd if self.flags & _FLAG_NEW_LISTENER else None

    def send_listener_fd(self, fd: int, pid: int, state: dict) -> None:
        """Send the container process state and the notify fd (config-linux.md#seccomp)."""
        import socket

        from corral.oci import fastjson

        message = {"ociVersion": state.get("ociVersion", "1.2.0"), "fds": ["seccompFd"],
                   "pid": pid, "state": state}
        if self.plan.listener_metadata:
            message["metadata"] = self.plan.listener_metadata
        if self.listener is None:
            raise SeccompLoadFailed(f"{FIELD}.listenerPath: not connected")
        sock = socket.socket(fileno=self.listener)
        try:
            socket.send_fds(sock, [fastjson.dumps(message).encode()], [fd])
        except OSError as exc:
            raise SeccompLoadFailed(f"{FIELD}.listenerPath: cannot send the listener fd to "
                                    f"{self.plan.listener_path}: {exc.strerror or exc}") from None
        finally:
            sock.close()
            self.listener = None
            os.close(fd)

    def release(self) -> None:
        if self.listener is not None:
            os.close(self.listener)
            self.listener = None


class Filter:
    """A libseccomp filter context, built from a plan; `export()` generates its BPF."""

    def __init__(self, lib, ctx: int, plan_: Plan) -> None:
        self._lib = lib
        self._ctx = ctx
        self.plan = plan_
        self.skipped: list[str] = []  # syscall names libseccomp does not know

    def export(self) -> bytes:
        """seccomp_export_bpf: the program seccomp_load would install."""
        fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
        try:
            rc = self._lib.seccomp_export_bpf(self._ctx, fd)
            if rc < 0:
                raise SeccompError(f"{FIELD}: libseccomp cannot generate the filter: "
                                   f"{os.strerror(-rc)}")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = 0


def kernel_flags(plan_: Plan) -> int:
    """The seccomp(2) flags libseccomp's seccomp_load would pass for this plan."""
    flags = _FLAG_NEW_LISTENER if plan_.uses_notify else 0
    for _field, flag in plan_.flags:
        flags |= _KERNEL_FLAGS.get(flag, 0)
    return flags


def compile(section: dict, cache_dir: str | None = None) -> Program:
    """Validate the section and generate its BPF program (not loaded yet). With
    `cache_dir` (a directory only root can write, such as the runtime's state root),
    programs are kept there, keyed by the plan, the architecture and the libseccomp
    library: the next container with the same profile skips libseccomp entirely."""
    global _validated
    if _validated is not None and _validated[0] is section:
        plan_ = _validated[1]
        _validated = None  # once: the caller may change the section afterwards
    else:
        plan_ = plan(section)
    key = _cache_key(plan_) if cache_dir else None
    bpf = _cached(cache_dir, key) if cache_dir and key else None
    if bpf is None:
        built = build(plan_, section)
        try:
            bpf = built.export()
        finally:
            built.release()
        if cache_dir and key:
            _store(cache_dir, key, bpf)
    return Program(plan_, bpf, kernel_flags(plan_))


def build(plan_: Plan, section: dict) -> Filter:
    """The libseccomp context for a plan (seccomp_init, arch_add, rule_add, attr_set)."""
    lib = library()
    ctx = lib.seccomp_init(plan_.default_action)
    if not ctx:
        raise SeccompError(f"{FIELD}.defaultAction: libseccomp {_version_text(lib)} "
                           f"refused {section.get('defaultAction')}")
    result = Filter(lib, ctx, plan_)
    try:
        _build(lib, ctx, plan_, result)
    except BaseException:
        result.release()
        raise
    return result


def _library_identity() -> str | None:
    """Which libseccomp.so.2 would be loaded, cheaply (no dlopen): its path and stat."""
    machine = os.uname().machine
    for directory in (f"/lib/{machine}-linux-gnu", f"/usr/lib/{machine}-linux-gnu",
                      "/usr/lib64", "/lib64", "/usr/lib", "/lib"):
        path = f"{directory}/libseccomp.so.2"
        try:
            st = os.stat(path)
        except OSError:
            continue
        return f"{machine}:{os.path.realpath(path)}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return None


def _cache_key(plan_: Plan) -> str | None:
    identity = _library_identity()
    if identity is None:
        return None
    from corral.oci.digest import sha256_hex

    material = repr((identity, plan_.default_action, [n for _, n in plan_.architectures],
                     [f for _, f in plan_.flags],
                     [(r.syscall, r.action, r.args) for r in plan_.rules]))
    return sha256_hex(material.encode())


def _cached(cache_dir: str, key: str) -> bytes | None:
    try:
        with open(f"{cache_dir}/{key}.bpf", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data if data and len(data) % 8 == 0 else None


def _store(cache_dir: str, key: str, bpf: bytes) -> None:
    """Write atomically (temp file, rename); a cache that cannot be written is skipped."""
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        temp = f"{cache_dir}/.{key}.{os.getpid()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, bpf)
        finally:
            os.close(fd)
        os.rename(temp, f"{cache_dir}/{key}.bpf")
    except OSError:
        pass


def _build(lib, ctx: int, plan_: Plan, result: Filter) -> None:
    import errno as errno_module

    # The runtime sets no_new_privs itself from process.noNewPrivileges.
    _attr(lib, ctx, _ATTR_CTL_NNP, 0, f"{FIELD}")
    # Report the kernel's errno from seccomp_load, not libseccomp's ECANCELED.
    lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)
    for field, name in plan_.architectures:
        token = lib.seccomp_arch_resolve_name(name.encode())
        if token == 0:
            raise SeccompError(f"{field}: architecture {name!r} is not supported by "
                               f"libseccomp {_version_text(lib)}")
        rc = lib.seccomp_arch_add(ctx, token)
        if rc < 0 and rc != -errno_module.EEXIST:
            raise SeccompError(f"{field}: cannot add architecture {name!r}: {os.strerror(-rc)}")
    for field, flag in plan_.flags:
        attribute, minimum = FLAGS[flag]
        if attribute is None:
            continue
        if lib.version < minimum:
            raise SeccompError(f"{field}: {flag} needs libseccomp "
                               f"{'.'.join(map(str, minimum))}, this host has "
                               f"{_version_text(lib)}")
        _attr(lib, ctx, attribute, 1, field)
    numbers: dict[str, int] = {}
    for rule in plan_.rules:
        number = numbers.get(rule.syscall)
        if number is None:
            number = numbers[rule.syscall] = lib.seccomp_syscall_resolve_name(
                rule.syscall.encode())
        if number == -1:  # __NR_SCMP_ERROR: unknown to libseccomp, skipped as runc does
            if rule.syscall not in result.skipped:
                result.skipped.append(rule.syscall)
            continue
        array = (lib.ArgCmp * max(1, len(rule.args)))()
        for position, (index, operator, datum_a, datum_b) in enumerate(rule.args):
            array[position].arg = index
            array[position].op = operator
            array[position].datum_a = datum_a
            array[position].datum_b = datum_b
        rc = lib.seccomp_rule_add_array(ctx, rule.action, number, len(rule.args), array)
        if rc < 0:
            raise SeccompError(f"{rule.field}: cannot add the rule for {rule.syscall!r}: "
                               f"{os.strerror(-rc)}")


def _attr(lib, ctx: int, attribute: int, value: int, field: str) -> None:
    rc = lib.seccomp_attr_set(ctx, attribute, value)
    if rc < 0:
        raise SeccompError(f"{field}: libseccomp {_version_text(lib)} cannot set filter "
                           f"attribute {attribute}: {os.strerror(-rc)}")


def features() -> dict:
    """features-linux.md#seccomp for this build and this host's libseccomp."""
    try:
        lib = library()
    except SeccompUnavailable:
        return {"enabled": False}
    archs = sorted(name for name, lib_name in ARCHITECTURES.items()
                   if lib.seccomp_arch_resolve_name(lib_name.encode()) != 0)
    supported = []
    ctx = lib.seccomp_init(_ACT_ALLOW)
    try:
        for flag, (attribute, minimum) in FLAGS.items():
            if lib.version < minimum:
                continue
            if attribute is None or lib.seccomp_attr_set(ctx, attribute, 1) == 0:
                supported.append(flag)
    finally:
        lib.seccomp_release(ctx)
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": archs,
        "knownFlags": list(FLAGS),
        "supportedFlags": supported,
    }
