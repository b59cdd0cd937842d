"""The CNI client's protocol (SPEC.md sections 2, 3, 5) against plugins that record
what they were given: ADD order and prevResult chaining, runtimeConfig only for declared
capabilities, DEL in reverse with the cached result, errors surfaced with the plugin's
message, version negotiation, STATUS and GC from 1.1.0, and the result cache.

Recording plugins are small scripts here because what is checked is what the runtime
sends; the real plugins are driven in tests/integration/test_network.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from corral.network.cni.client import Attachment, CNIClient, CNIError, PluginNotFound
from corral.network.cni.config import ConfigError, parse_conflist

RECORDER = """#!{python}
import json, os, sys
config = json.load(sys.stdin)
command = os.environ["CNI_COMMAND"]
with open({log!r}, "a") as f:
    f.write(json.dumps({{"plugin": os.path.basename(sys.argv[0]), "command": command,
                        "config": config,
                        "env": {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
                        }}) + "\\n")
if command == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": {versions!r}}}))
    sys.exit(0)
fail = config.get("fail") or {{}}
if command in fail:
    print(json.dumps({{"cniVersion": config.get("cniVersion"), "code": fail[command][0],
                      "msg": fail[command][1], "details": "more detail"}}))
    sys.exit(1)
if command == "ADD":
    result = dict(config.get("prevResult") or {{"cniVersion": config["cniVersion"],
                                                "interfaces": [], "ips": []}})
    result["interfaces"] = list(result.get("interfaces", [])) + [
        {{"name": config.get("ifname_out", "eth0"), "sandbox": os.environ["CNI_NETNS"]}}]
    if "address" in config:
        result["ips"] = list(result.get("ips", [])) + [
            {{"address": config["address"], "interface": len(result["interfaces"]) - 1}}]
    print(json.dumps(result))
"""

ALL = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.fixture
def plugins(tmp_path):
    directory = tmp_path / "bin"
    directory.mkdir()
    log = tmp_path / "calls.jsonl"

    def make(name: str, versions: list[str] = ALL) -> None:
        path = directory / name
        path.write_text(RECORDER.format(python=sys.executable, log=str(log),
                                        versions=versions))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def calls() -> list[dict]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    make.dir, make.calls = directory, calls
    return make


def _conflist(version: str = "1.0.0", **extra) -> dict:
    return {"cniVersion": version, "name": "testnet", "plugins": [
        {"type": "first", "address": "10.1.0.5/24", "capabilities": {"portMappings": True}},
        {"type": "second", "custom": {"kept": True}},
    ], **extra}


def _client(plugins, tmp_path) -> CNIClient:
    return CNIClient(paths=[str(plugins.dir)], cache_dir=tmp_path / "cache")


def test_add_chains_prev_result_and_injects_only_declared_capabilities(plugins, tmp_path):
    plugins("first")
    plugins("second")
    client = _client(plugins, tmp_path)
    att = Attachment("ctr1", "eth0", "/run/netns/x", args=(("K8S_POD_NAME", "p"),),
                     capability_args={"portMappings": [{"hostPort": 8080}], "mac": "x"})
    result = client.add(parse_conflist(_conflist()), att)
    first, second = plugins.calls()
    assert [first["plugin"], second["plugin"]] == ["first", "second"]
    assert first["env"]["CNI_COMMAND"] == "ADD"
    assert first["env"]["CNI_CONTAINERID"] == "ctr1" and first["env"]["CNI_IFNAME"] == "eth0"
    assert first["env"]["CNI_NETNS"] == "/run/netns/x"
    assert first["env"]["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=p"
    assert first["env"]["CNI_PATH"] == str(plugins.dir)
    assert first["config"]["name"] == "testnet" and first["config"]["cniVersion"] == "1.0.0"
    assert first["config"]["runtimeConfig"] == {"portMappings": [{"hostPort": 8080}]}
    assert "capabilities" not in first["config"] and "prevResult" not in first["config"]
    assert "runtimeConfig" not in second["config"]
    assert second["config"]["custom"] == {"kept": True}
    assert second["config"]["prevResult"]["ips"] == [{"address": "10.1.0.5/24",
                                                      "interface": 0}]
    assert result["ips"][0]["address"] == "10.1.0.5/24" and len(result["interfaces"]) == 2
    cached = client.cached("testnet", "ctr1", "eth0")
    assert cached is not None and cached.result == result
    assert cached.config["plugins"][0]["type"] == "first"


def test_delete_runs_in_reverse_with_the_cached_result_even_without_the_list(plugins,
                                                                             tmp_path):
    plugins("first")
    plugins("second")
    client = _client(plugins, tmp_path)
    att = Attachment("ctr1", "eth0", "/run/netns/x",
                     capability_args={"portMappings": [{"hostPort": 1}]})
    result = client.add(parse_conflist(_conflist()), att)
    # a new client (a new process) knows only the cache: the list is gone
    fresh = _client(plugins, tmp_path)
    fresh.delete(None, Attachment("ctr1", "eth0", ""), network="testnet")
    deletes = [c for c in plugins.calls() if c["env"]["CNI_COMMAND"] == "DEL"]
    assert [c["plugin"] for c in deletes] == ["second", "first"]
    assert all(c["config"]["prevResult"] == result for c in deletes)
    # capability args of the ADD are sent again (portmap needs them to remove rules)
    assert deletes[1]["config"]["runtimeConfig"] == {"portMappings": [{"hostPort": 1}]}
    assert fresh.cached("testnet", "ctr1", "eth0") is None
    fresh.delete(None, Attachment("ctr1", "eth0", ""), network="testnet")  # idempotent


def test_plugin_error_is_surfaced_and_a_failed_add_is_deleted(plugins, tmp_path):
    plugins("first")
    plugins("second")
    client = _client(plugins, tmp_path)
    data = _conflist()
    data["plugins"][1]["fail"] = {"ADD": [11, "cannot create bridge"]}
    with pytest.raises(CNIError) as info:
        client.add(parse_conflist(data), Attachment("ctr2", "eth0", "/n"))
    error = info.value
    assert (error.plugin, error.command, error.code) == ("second", "ADD", 11)
    assert "cannot create bridge" in str(error) and "testnet" in str(error)
    assert "more detail" in str(error)
    commands = [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in plugins.calls()]
    assert commands[-2:] == [("second", "DEL"), ("first", "DEL")]  # SPEC: DEL after ADD
    assert client.cached("testnet", "ctr2", "eth0") is None


def test_missing_plugin_names_type_and_path(plugins, tmp_path):
    plugins("first")
    client = _client(plugins, tmp_path)
    with pytest.raises(PluginNotFound) as info:
        client.add(parse_conflist(_conflist()), Attachment("ctr3", "eth0", "/n"))
    assert "'second'" in str(info.value) and str(plugins.dir) in str(info.value)


def test_version_negotiation_picks_the_highest_common_version(plugins, tmp_path):
    plugins("first", versions=["0.4.0", "1.0.0"])
    plugins("second", versions=["0.3.1", "0.4.0", "1.0.0"])
    client = _client(plugins, tmp_path)
    conflist = parse_conflist(_conflist("1.1.0", cniVersions=["0.4.0", "1.0.0", "1.1.0"]))
    assert client.negotiate(conflist) == "1.0.0"
    client.add(conflist, Attachment("ctr4", "eth0", "/n"))
    adds = [c for c in plugins.calls() if c["command"] == "ADD"]
    assert {c["config"]["cniVersion"] for c in adds} == {"1.0.0"}
    plugins("second", versions=["0.3.1"])
    with pytest.raises(CNIError, match="supports none of"):
        _client(plugins, tmp_path).negotiate(conflist)


def test_status_and_gc_only_from_1_1_0(plugins, tmp_path):
    plugins("first")
    plugins("second")
    client = _client(plugins, tmp_path)
    old = parse_conflist(_conflist("1.0.0"))
    client.status(old)
    assert plugins.calls() == []
    new = parse_conflist(_conflist("1.1.0"))
    client.add(new, Attachment("keep", "eth0", "/n"))
    client.add(new, Attachment("stale", "eth0", "/n"))
    client.status(new)
    assert [c["command"] for c in plugins.calls()][-2:] == ["STATUS", "STATUS"]
    errors = client.gc(new, [("keep", "eth0")])
    assert errors == []
    gcs = [c for c in plugins.calls() if c["command"] == "GC"]
    assert [c["plugin"] for c in gcs] == ["first", "second"]
    assert gcs[0]["config"]["cni.dev/valid-attachments"] == [{"containerID": "keep",
                                                              "ifname": "eth0"}]
    assert "CNI_CONTAINERID" not in gcs[0]["env"]
    assert [e.container_id for e in client.cached_entries("testnet")] == ["keep"]


def test_check_uses_the_cached_result_and_honours_disable_check(plugins, tmp_path):
    plugins("first")
    plugins("second")
    client = _client(plugins, tmp_path)
    conflist = parse_conflist(_conflist())
    result = client.add(conflist, Attachment("ctr5", "eth0", "/n"))
    client.check(conflist, Attachment("ctr5", "eth0", "/n"))
    checks = [c for c in plugins.calls() if c["command"] == "CHECK"]
    assert [c["plugin"] for c in checks] == ["first", "second"]
    assert all(c["config"]["prevResult"] == result for c in checks)
    before = len(plugins.calls())
    client.check(parse_conflist(_conflist(disableCheck=True)),
                 Attachment("ctr5", "eth0", "/n"))
    assert len(plugins.calls()) == before


@pytest.mark.parametrize("data, field", [
    ({"cniVersion": "1.0.0", "name": "bad/name", "plugins": [{"type": "x"}]}, "name"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": []}, "plugins"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]}, "plugins[0].type"),
    ({"cniVersion": "one", "name": "n", "plugins": [{"type": "x"}]}, "cniVersion"),
    ({"name": "n", "plugins": [{"type": "x"}]}, "cniVersion"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x", "runtimeConfig": {}}]},
     "runtimeConfig"),
])
def test_bad_configuration_lists_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_conflist(data, "net.conflist")


def test_single_plugin_conf_becomes_a_list():
    conflist = parse_conflist({"cniVersion": "0.4.0", "name": "n", "type": "bridge",
                               "bridge": "b0"})
    assert conflist.plugins == ({"type": "bridge", "bridge": "b0"},)


@pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge") or os.geteuid() != 0,
                    reason="needs the real bridge plugin and root")
def test_real_plugin_error_message_reaches_the_caller(tmp_path):
    from corral.network import netns

    client = CNIClient(cache_dir=tmp_path / "cache")
    conflist = parse_conflist({"cniVersion": "1.0.0", "name": "corral-test-bad", "plugins": [
        {"type": "bridge", "bridge": "corral-test-name-too-long",
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.249.0/24"}]],
                  "dataDir": str(tmp_path / "ipam")}}]})
    path = netns.create(tmp_path / "ns")
    try:
        with pytest.raises(CNIError) as info:
            client.add(conflist, Attachment("corral-test-c1", "eth0", str(path)))
        assert info.value.plugin == "bridge" and "corral-test-name-too-long" in str(info.value)
    finally:
        netns.remove(path)
    assert not Path("/sys/class/net/corral-test-name-too-long").exists()
    assert os.listdir(tmp_path / "cache" / "results") == [] \
        if (tmp_path / "cache" / "results").exists() else True
