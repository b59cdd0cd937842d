"""corral.linux.mounts (secure_join, parse_options) and corral.linux.signals.parse."""

from __future__ import annotations

import os

import pytest

from corral.errors import InvalidArgument
from corral.linux import mounts, signals
from corral.linux import syscalls as sc
from corral.linux.mounts import parse_options, secure_join

# --- secure_join ---------------------------------------------------------------


@pytest.fixture
def rootfs(tmp_path):
    """A rootfs with hostile symlinks; the test's tmp dir stands for the host."""
    root = tmp_path / "rootfs"
    for d in ("etc", "usr/lib", "var", "data/real"):
        (root / d).mkdir(parents=True)
    (root / "abs-etc").symlink_to("/etc")
    (root / "up").symlink_to("../../..")
    (root / "var/run").symlink_to("../run")
    (root / "usr/lib64").symlink_to("lib")
    (root / "data/link").symlink_to("/data/real")
    (root / "data/rel").symlink_to("real/../../etc")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "self").symlink_to("self")
    (root / "chain").symlink_to("abs-etc/passwd")
    return str(root)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


@pytest.mark.parametrize("unsafe,expected", [
    ("/etc/passwd", "etc/passwd"),
    ("etc/passwd", "etc/passwd"),
    ("/", ""),
    ("", ""),
    ("/./etc//./passwd", "etc/passwd"),
    ("/abs-etc/shadow", "etc/shadow"),           # absolute symlink: relative to the rootfs
    ("/abs-etc", "etc"),
    ("/up", ""),                                 # ../../.. cannot climb out
    ("/up/etc/passwd", "etc/passwd"),
    ("/../../../etc/passwd", "etc/passwd"),      # nor can a literal ..
    ("/usr/../../etc", "etc"),
    ("/var/run/x", "run/x"),                     # relative symlink, target missing
    ("/usr/lib64/libc.so", "usr/lib/libc.so"),
    ("/data/link/file", "data/real/file"),
    ("/data/rel", "etc"),
    ("/chain", "etc/passwd"),                    # symlink to a path through a symlink
    ("/missing/deeper/file", "missing/deeper/file"),
])
def test_secure_join(rootfs, unsafe, expected):
    result = secure_join(rootfs, unsafe)
    assert result == os.path.join(rootfs, expected) if expected else result == rootfs
    assert _inside(rootfs, result)


@pytest.mark.parametrize("unsafe", ["/loop1", "/loop2/x", "/self"])
def test_secure_join_symlink_loops_are_errors(rootfs, unsafe):
    with pytest.raises(InvalidArgument, match="too many symlinks"):
        secure_join(rootfs, unsafe)


def test_secure_join_never_leaves_the_rootfs(rootfs):
    """Every combination of the hostile links and dot-dots stays inside."""
    pieces = ["..", "up", "abs-etc", "var", "run", "data", "link", "rel", "usr", "lib64", "x"]
    for a in pieces:
        for b in pieces:
            for c in pieces:
                result = secure_join(rootfs, f"/{a}/{b}/{c}")
                assert _inside(rootfs, result), (a, b, c, result)


# --- parse_options ---------------------------------------------------------------


def test_empty_options():
    parsed = parse_options(None)
    assert (parsed.flags, parsed.propagation, parsed.data, parsed.recursive_readonly) == (
        0, [], [], False)


def test_flags_and_data_are_split():
    parsed = parse_options(["nosuid", "noexec", "nodev", "mode=755", "size=65536k"])
    assert parsed.flags == sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV
    assert parsed.data == ["mode=755", "size=65536k"]


def test_bind_and_rbind():
    assert parse_options(["bind"]).flags == sc.MS_BIND
    assert parse_options(["rbind"]).flags == sc.MS_BIND | sc.MS_REC


def test_clearing_options_undo_setting_ones():
    assert parse_options(["ro", "rw"]).flags == 0
    assert parse_options(["rw", "ro"]).flags == sc.MS_RDONLY
    assert parse_options(["nosuid", "suid", "nodev"]).flags == sc.MS_NODEV
    assert parse_options(["noexec", "exec"]).flags == 0


def test_propagation_options_are_collected_in_order():
    parsed = parse_options(["rbind", "rprivate", "shared"])
    assert parsed.flags == sc.MS_BIND | sc.MS_REC
    assert parsed.propagation == [sc.MS_PRIVATE | sc.MS_REC, sc.MS_SHARED]
    assert parsed.data == []


def test_rro_is_recursive_readonly():
    parsed = parse_options(["rbind", "rro"])
    assert parsed.recursive_readonly
    assert parsed.flags & sc.MS_RDONLY


def test_runtime_only_options_are_dropped():
    parsed = parse_options(["tmpcopyup", "idmap", "mode=1777"])
    assert parsed.data == ["mode=1777"] and parsed.flags == 0


def test_unknown_options_go_to_the_filesystem():
    assert parse_options(["newinstance", "ptmxmode=0666", "gid=5"]).data == [
        "newinstance", "ptmxmode=0666", "gid=5"]


def test_every_flag_option_maps_to_an_int():
    for name, (clear, flag) in mounts.FLAGS.items():
        assert isinstance(clear, bool) and isinstance(flag, int), name


def test_propagation_flag_unknown():
    with pytest.raises(InvalidArgument, match="linux.rootfsPropagation"):
        mounts.propagation_flag("sideways", "linux.rootfsPropagation")
    assert mounts.propagation_flag("rslave", "x") == sc.MS_SLAVE | sc.MS_REC


# --- signals.parse -----------------------------------------------------------------


@pytest.mark.parametrize("text,number", [
    ("TERM", 15), ("SIGTERM", 15), ("sigterm", 15), ("term", 15), ("15", 15), (" 9 ", 9),
    ("KILL", 9), ("SIGKILL", 9), ("HUP", 1), ("SIGUSR1", 10), ("USR2", 12), ("SIGCHLD", 17),
    ("SIGWINCH", 28), ("SIGSYS", 31), ("IOT", 6), ("SIGRTMIN", 34), ("RTMIN+3", 37),
    ("SIGRTMAX", 64), ("SIGRTMAX-2", 62), ("RTMIN+30", 64), ("64", 64), ("1", 1), ("0", 0),
])
def test_signal_parse(text, number):
    assert signals.parse(text) == number


@pytest.mark.parametrize("text", ["", "65", "-1", "SIGFOO", "SIG", "RTMIN+31",
                                  "RTMAX-31", "RTMIN-1", "RTMAX+1", "TERM9", "1.5"])
def test_signal_parse_rejects(text):
    with pytest.raises(InvalidArgument):
        signals.parse(text)


def test_signal_numbers_match_the_host():
    import signal

    for name, number in signals.NUMBERS.items():
        if hasattr(signal, f"SIG{name}"):
            assert getattr(signal, f"SIG{name}") == number, name
    assert signal.SIGRTMIN == signals.SIGRTMIN and signal.SIGRTMAX == signals.SIGRTMAX
