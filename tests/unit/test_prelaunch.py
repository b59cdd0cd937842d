"""corral.cli.prelaunch's reading of the command line (the launch itself: the
integration tests in test_engine_cli.py) and corral.storage.reservations."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from corral.cli import main as cli_main
from corral.cli import prelaunch
from corral.storage import reservations


def _option_sets(parser) -> tuple[set[str], set[str]]:
    flags, values = set(), set()
    for action in parser._actions:
        if action.option_strings and "--help" not in action.option_strings:
            (flags if action.nargs == 0 else values).update(action.option_strings)
    return flags, values


def test_option_tables_are_the_real_parsers():
    parser = cli_main.build_parser(["run", "busybox"])
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    flags, values = _option_sets(commands.choices["run"])
    assert flags == set(prelaunch.RUN_FLAGS)
    assert values == set(prelaunch.RUN_VALUES)
    flags, values = _option_sets(parser)
    assert (flags, values) == (set(prelaunch.GLOBAL_FLAGS), set(prelaunch.GLOBAL_VALUES))


def test_root_defaults_are_the_stores():
    from corral.storage import store

    assert (prelaunch.ROOT_ENV, prelaunch.DEFAULT_ROOT) == (store.ROOT_ENV,
                                                             str(store.DEFAULT_ROOT))


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("CORRAL_ROOT", "CORRAL_CONFIG", "CORRAL_OCI_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    if os.path.exists("/etc/corral/corral.conf"):
        pytest.skip("a system configuration file exists: no prelaunch on this host")


@pytest.mark.parametrize("argv, expected", [
    (["--root", "/r", "run", "--rm", "--network", "none", "busybox", "true"],
     ("/r", False, False, "none")),
    (["--root=/r", "--debug", "run", "-it", "--net=host", "img", "sh"],
     ("/r", True, True, "host")),
    (["run", "-itd", "--network", "private", "-e", "A=1", "-eB=2", "-e=C", "--name", "x",
      "-p8080:80", "img"], ("/var/lib/corral", True, True, "private")),
    (["run", "-i", "--network", "none", "-t", "img", "-t", "--bogus"],
     ("/var/lib/corral", True, True, "none")),  # after the image: the command's
    (["run", "-d", "--network", "none", "-w", "-t", "img"],  # argparse refuses: abandoned
     ("/var/lib/corral", False, False, "none")),
    (["run", "--rm", "busybox", "true"],  # the default network: create makes the netns
     ("/var/lib/corral", False, False, "bridge")),
    (["run", "--network", "bridge", "busybox"], ("/var/lib/corral", False, False, "bridge")),
    (["run", "--network", "appnet,other", "busybox"],
     ("/var/lib/corral", False, False, "bridge")),
])
def test_reads_a_run_it_can_launch(clean_env, argv, expected):
    assert prelaunch.read_run(argv) == expected


@pytest.mark.parametrize("argv", [
    ["run", "--network", "container:x", "busybox"],  # the target's netns: at start
    ["run", "--network", "none", "--network", "none", "busybox"],
    ["run", "--network", "none,host", "busybox"],
    ["run", "--network", "none", "--runtime", "runc", "busybox"],
    ["--runtime", "/usr/bin/runc", "run", "--network", "none", "busybox"],
    ["run", "--network", "none", "--bogus", "busybox"],  # unknown: argparse decides
    ["run", "--netw", "none", "busybox"],  # an abbreviation argparse would take
    ["run", "--network", "none", "-x", "busybox"],
    ["run", "--network", "none", "--", "busybox"],
    ["run", "--network", "none"],  # no image
    ["run", "--network"],
    ["create", "--network", "none", "busybox"],
    ["--help"],
    [],
])
def test_gives_up_on_anything_else(clean_env, argv):
    assert prelaunch.read_run(argv) is None


def test_reads_the_configuration_as_the_cli_does(clean_env, monkeypatch, tmp_path):
    argv = ["run", "--network", "none", "busybox"]
    assert prelaunch.read_run(argv) is not None
    conf = tmp_path / "corral.conf"
    conf.write_text('[containers]\nnetns = "container:web"\n')
    monkeypatch.setenv("CORRAL_CONFIG", str(conf))
    assert prelaunch.read_run(["run", "busybox"]) is None  # the configured default
    conf.write_text('[containers]\nnetns = "none"\n')
    assert prelaunch.read_run(["run", "busybox"])[3] == "none"
    monkeypatch.delenv("CORRAL_CONFIG")
    monkeypatch.setenv("CORRAL_ROOT", "/elsewhere")
    assert prelaunch.read_run(argv)[0] == "/elsewhere"
    monkeypatch.setenv("CORRAL_CONFIG", "/no/such/file.conf")
    assert prelaunch.read_run(argv) is None  # the CLI reports it
    conf.write_text('[storage]\nroot = "/from/file"\n')
    monkeypatch.setenv("CORRAL_CONFIG", str(conf))
    assert prelaunch.read_run(argv)[0] == "/elsewhere"  # the environment wins
    monkeypatch.delenv("CORRAL_ROOT")
    assert prelaunch.read_run(argv)[0] == "/from/file"
    assert prelaunch.read_run(["--root", "/r", *argv])[0] == "/r"
    assert prelaunch.config().root == "/from/file"
    conf.write_text('[engine]\nruntime = "runc"\n')
    assert prelaunch.read_run(argv) is None
    monkeypatch.delenv("CORRAL_CONFIG")
    monkeypatch.setenv("CORRAL_OCI_RUNTIME", "runc")
    assert prelaunch.read_run(argv) is None


def test_no_launch_without_a_store(clean_env, tmp_path):
    prelaunch.begin(["--root", str(tmp_path / "none"), "run", "--network", "none", "x"])
    assert prelaunch.pending() is None
    assert not (tmp_path / "none").exists()


# -- reservations -------------------------------------------------------------------------
def test_reserve_makes_the_directory_with_the_reservers_pid(tmp_path):
    (tmp_path / "containers").mkdir()
    path = reservations.reserve(str(tmp_path), "ab" * 32)
    assert os.path.isdir(path) and reservations.holder(path) == os.getpid()
    assert reservations.held(path)
    with pytest.raises(FileExistsError):
        reservations.reserve(str(tmp_path), "ab" * 32)
    reservations.release(path)
    assert reservations.holder(path) is None and not reservations.held(path)
    assert os.path.isdir(path)


def test_a_dead_reserver_holds_nothing(tmp_path):
    (tmp_path / "containers").mkdir()
    path = reservations.reserve(str(tmp_path), "cd" * 32)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(path, reservations.MARKER), "w") as f:
        f.write(dead)
    assert reservations.holder(path) == int(dead)
    assert not reservations.held(path)


def test_the_store_adopts_a_reserved_directory_and_repair_spares_it(tmp_path):
    from corral.errors import InvalidArgument
    from corral.storage import Store

    store = Store.open(tmp_path, "vfs")
    home = str(tmp_path / "storage")
    kept = reservations.reserve(home, "ef" * 32)
    store.repair()
    assert os.path.isdir(kept)  # its reserver (this process) lives
    with open(os.path.join(kept, reservations.MARKER), "w") as f:
        f.write("999999999")  # no such process
    store.repair()
    assert not os.path.exists(kept)

    path = reservations.reserve(home, "12" * 32)
    record = store.create_container(None, names=["c1"], container_id="12" * 32,
                                    reserved=True)
    assert record.id == "12" * 32
    assert reservations.holder(path) is None  # an ordinary container directory now
    assert (tmp_path / "storage" / "containers" / record.id / "merged").is_dir()
    store.repair()
    assert [c.id for c in store.list_containers()] == [record.id]

    os.mkdir(os.path.join(home, "containers", "34" * 32))  # not reserved by anyone
    with pytest.raises(InvalidArgument, match="not reserved"):
        store.create_container(None, names=["c2"], container_id="34" * 32, reserved=True)
    assert [c.id for c in store.list_containers()] == [record.id]
