"""The configuration file (`corral.engine.config_file`): parsing, errors, and precedence
(built-in < /etc/corral/corral.conf < $CORRAL_CONFIG < command-line flags)."""

from __future__ import annotations

import argparse

import pytest

from corral.engine import config_file
from corral.engine.config_file import ConfigError, EngineConfig
from corral.errors import NotFound

FULL = """
[storage]
root = "/srv/corral"
driver = "vfs"

[engine]
runtime = "runc"
init_path = "/usr/bin/tini"

[containers]
netns = "host"
default_capabilities = ["chown", "CAP_KILL"]
default_ulimits = ["nofile=1280:2560"]
default_sysctls = []
pids_limit = 0
shm_size = "128m"
seccomp_profile = "unconfined"
read_only_tmpfs = false
"""


def test_builtin_defaults_are_podmans():
    config = EngineConfig()
    assert config.pids_limit == 2048
    assert config.shm_size == 64 << 20
    assert "CAP_NET_RAW" not in config.default_capabilities
    assert "CAP_CHOWN" in config.default_capabilities and len(config.default_capabilities) == 11
    assert config.default_sysctls == ("net.ipv4.ping_group_range=0 0",)
    assert config.netns == "bridge" and config.root is None


def test_parse_every_key():
    config = config_file.parse(FULL, "test.conf")
    assert config.root == "/srv/corral" and config.driver == "vfs"
    assert config.runtime == "runc" and config.init_path == "/usr/bin/tini"
    assert config.netns == "host"
    assert config.default_capabilities == ("CAP_CHOWN", "CAP_KILL")
    assert config.default_ulimits == ("nofile=1280:2560",)
    assert config.default_sysctls == ()
    assert config.pids_limit == 0 and config.shm_size == 128 << 20
    assert config.seccomp_profile == "unconfined" and config.read_only_tmpfs is False
    assert config.sources == ("test.conf",)


@pytest.mark.parametrize("text,match", [
    ("[bogus]\nx = 1\n", "unknown table"),
    ("[storage]\nrooot = \"/x\"\n", "unknown key storage.rooot"),
    ("[containers]\npids_limit = \"many\"\n", "integer"),
    ("[containers]\npids_limit = true\n", "integer"),
    ("[containers]\ndefault_capabilities = [\"CAP_FLY\"]\n", "unknown capability"),
    ("[containers]\ndefault_ulimits = \"nofile=1\"\n", "list of strings"),
    ("[containers]\nshm_size = \"huge\"\n", "size"),
    ("[containers]\nnetns = \"wifi\"\n", "netns"),
    ("[storage]\ndriver = \"btrfs\"\n", "overlay or vfs"),
    ("[containers]\nread_only_tmpfs = \"yes\"\n", "true or false"),
    ("not toml = = 1", "test.conf"),
])
def test_parse_errors_name_file_and_key(text, match):
    with pytest.raises(ConfigError, match=match):
        config_file.parse(text, "test.conf")


def test_later_files_override_earlier_key_by_key(tmp_path):
    system = tmp_path / "system.conf"
    user = tmp_path / "user.conf"
    system.write_text('[storage]\nroot = "/sys-root"\ndriver = "vfs"\n'
                      '[containers]\npids_limit = 10\n')
    user.write_text('[storage]\nroot = "/user-root"\n')
    config = config_file.load([system, user])
    assert config.root == "/user-root"       # overridden
    assert config.driver == "vfs"            # kept from the system file
    assert config.pids_limit == 10           # kept from the system file
    assert config.shm_size == 64 << 20       # built-in
    assert config.sources == (str(system), str(user))


def test_config_paths_system_then_env(tmp_path, monkeypatch):
    system = tmp_path / "corral.conf"
    monkeypatch.setattr(config_file, "SYSTEM_CONFIG", system)
    assert config_file.config_paths({}) == []
    system.write_text("")
    assert config_file.config_paths({}) == [system]
    assert config_file.config_paths({"CORRAL_CONFIG": "/x.conf"}) == [system,
                                                                        config_file.Path("/x.conf")]


def test_env_config_must_exist(tmp_path, monkeypatch):
    monkeypatch.setattr(config_file, "SYSTEM_CONFIG", tmp_path / "none.conf")
    with pytest.raises(NotFound, match="does not exist"):
        config_file.load(environ={"CORRAL_CONFIG": str(tmp_path / "missing.conf")})


def test_flags_override_file():
    config = config_file.parse(FULL)
    flags = config.override(root="/flag-root", driver=None, runtime="/bin/crun")
    assert flags.root == "/flag-root" and flags.runtime == "/bin/crun"
    assert flags.driver == "vfs"  # None: no flag given, the file's value stays


def _context(argv: list[str], monkeypatch, tmp_path, conf: str | None, env_root: str | None):
    from corral.cli.main import Context

    monkeypatch.setattr(config_file, "SYSTEM_CONFIG", tmp_path / "no-system.conf")
    if conf is None:
        monkeypatch.delenv("CORRAL_CONFIG", raising=False)
    else:
        path = tmp_path / "corral.conf"
        path.write_text(conf)
        monkeypatch.setenv("CORRAL_CONFIG", str(path))
    if env_root is None:
        monkeypatch.delenv("CORRAL_ROOT", raising=False)
    else:
        monkeypatch.setenv("CORRAL_ROOT", env_root)
    monkeypatch.delenv("CORRAL_OCI_RUNTIME", raising=False)
    parser = argparse.ArgumentParser()
    parser.add_argument("--root")
    parser.add_argument("--storage-driver")
    parser.add_argument("--runtime")
    parser.add_argument("--debug", action="store_true")
    return Context(parser.parse_args(argv))


def test_cli_precedence(monkeypatch, tmp_path):
    conf = '[storage]\nroot = "/file-root"\ndriver = "vfs"\n[engine]\nruntime = "/file/runc"\n'
    ctx = _context([], monkeypatch, tmp_path, conf, None)
    assert str(ctx.root) == "/file-root" and ctx.driver == "vfs"
    assert ctx.runtime == "/file/runc"
    ctx = _context([], monkeypatch, tmp_path, conf, "/env-root")
    assert str(ctx.root) == "/env-root"  # $CORRAL_ROOT beats the file
    ctx = _context(["--root", "/flag-root", "--storage-driver", "overlay", "--runtime",
                    "/flag/runtime"], monkeypatch, tmp_path, conf, "/env-root")
    assert str(ctx.root) == "/flag-root" and ctx.driver == "overlay"
    assert ctx.runtime == "/flag/runtime"
    ctx = _context([], monkeypatch, tmp_path, None, None)
    assert str(ctx.root) == "/var/lib/corral" and ctx.driver is None
    assert ctx.runtime.endswith("corral-runtime")


def test_as_dict_lists():
    data = config_file.as_dict(EngineConfig())
    assert isinstance(data["default_capabilities"], list) and data["pids_limit"] == 2048


# -- ContainerConfig records (corral.engine.config) ------------------------------------------


def test_container_config_new_fields_round_trip():
    from corral.engine.config import ContainerConfig

    config = ContainerConfig(
        image="busybox", ipc="container:abc", uts="host", pid="ns:/proc/1/ns/pid",
        cgroup_parent="/kubepods/pod1", cgroup_conf=["memory.high=1g"], shm_size="1m",
        sysctls=["net.core.somaxconn=5"], cpu_shares=512, cpu_period=100000,
        cpu_quota=50000, cpuset_cpus="0", cpuset_mems="0", memory_swap="-1",
        oom_score_adj=10, group_add=["5"], masked_paths=["/m"], readonly_paths=[],
        log_path="/var/log/pods/c.log", extra={"future_option": 1})
    data = config.to_json()
    assert ContainerConfig.from_json(data) == config
    import json

    assert ContainerConfig.from_json(json.loads(json.dumps(data))) == config


def test_container_config_old_records_load():
    from corral.engine.config import ContainerConfig

    # written before these fields: options under `extra`, the new fields absent
    old = {"image": "busybox", "command": ["sh"], "network": "bridge",
           "extra": {"shm_size": "16m", "sysctls": ["net.core.somaxconn=7"],
                     "cpu_shares": 100, "init_path": "/usr/bin/tini", "log_path": "/l.log",
                     "unknown": "kept"}}
    config = ContainerConfig.from_json(old)
    assert (config.shm_size, config.sysctls, config.cpu_shares) == (
        "16m", ["net.core.somaxconn=7"], 100)
    assert (config.init_path, config.log_path) == ("/usr/bin/tini", "/l.log")
    assert config.extra == {"unknown": "kept"}
    assert (config.ipc, config.pid, config.cgroup_parent, config.masked_paths) == (
        None, None, None, None)
    assert config.group_add == [] and config.cgroup_conf == []
    # a field given at the top wins over a stale copy under extra
    both = ContainerConfig.from_json({"image": "x", "shm_size": "2m",
                                      "extra": {"shm_size": "9m"}})
    assert both.shm_size == "2m" and both.extra == {}
