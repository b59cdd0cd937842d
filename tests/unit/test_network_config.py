"""Network options without containers: `-p` parsing and host-port checks, `--network`
flags, named networks' records and the CNI lists made from them, hosts files."""

from __future__ import annotations

import socket

import pytest

from corral.engine.networking import parse_network_flags
from corral.errors import AlreadyExists, InvalidArgument
from corral.network import hosts
from corral.network.networks import NetworkStore
from corral.network.ports import PortMapping, parse_exposed, parse_publish, reserve


@pytest.mark.parametrize("text, expected", [
    ("80", [PortMapping(80, 0, "tcp", "")]),
    ("8080:80", [PortMapping(80, 8080, "tcp", "")]),
    ("127.0.0.1:8080:80/udp", [PortMapping(80, 8080, "udp", "127.0.0.1")]),
    ("127.0.0.1::80", [PortMapping(80, 0, "tcp", "127.0.0.1")]),
    ("[::1]:8080:80", [PortMapping(80, 8080, "tcp", "::1")]),
    ("8000-8001:80-81", [PortMapping(80, 8000, "tcp", ""), PortMapping(81, 8001, "tcp", "")]),
])
def test_parse_publish(text, expected):
    assert parse_publish(text) == expected


@pytest.mark.parametrize("text, word", [
    ("abc", "container port"), ("0:80", "out of range"), ("80/icmp", "protocol"),
    ("8000-8002:80-81", "differ"), ("1:2:3:4", "expected"), ("x.y:80:80", "host IP"),
])
def test_parse_publish_refuses(text, word):
    with pytest.raises(InvalidArgument, match=word):
        parse_publish(text)


def test_parse_exposed():
    assert parse_exposed({"80/tcp": {}, "53/udp": {}}) == [PortMapping(80, 0, "tcp"),
                                                          PortMapping(53, 0, "udp")]


def test_reserve_picks_free_ports_and_refuses_taken_ones():
    [mapping] = reserve([PortMapping(80, 0, "tcp", "127.0.0.1")])
    assert mapping.host_port > 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AlreadyExists, match=f"127.0.0.1:{port}/tcp"):
            reserve([PortMapping(80, port, "tcp", "127.0.0.1")])
    with pytest.raises(AlreadyExists, match="another container"):
        reserve([PortMapping(80, port, "tcp", "127.0.0.1")], {("", port, "tcp")})
    with pytest.raises(AlreadyExists):  # twice in one request
        reserve([PortMapping(80, port, "tcp", "127.0.0.1"),
                 PortMapping(81, port, "tcp", "127.0.0.1")])


@pytest.mark.parametrize("values, expected", [
    ([], ("bridge", [])),
    (["none"], ("none", [])),
    (["host"], ("host", [])),
    (["bridge"], ("bridge", [])),
    (["a,b", "c"], ("bridge", ["a", "b", "c"])),
    (["container:web"], ("container:web", [])),
])
def test_parse_network_flags(values, expected):
    assert parse_network_flags(values, "bridge") == expected


def test_parse_network_flags_refuses_mixing_modes():
    with pytest.raises(InvalidArgument, match="cannot be combined"):
        parse_network_flags(["host", "mynet"])
    with pytest.raises(InvalidArgument, match="container"):
        parse_network_flags(["container:"])


def test_network_records_and_their_cni_lists(tmp_path):
    store = NetworkStore(tmp_path, default_name="corral-test-udef",
                         default_subnet="10.99.250.0/24", default_bridge="corral-test-udf")
    net = store.create("corral-test-u1", subnets=["10.99.251.0/24"],
                       gateways=["10.99.251.254"], ip_ranges=["10.99.251.128/25"],
                       labels={"a": "b"}, bridge="corral-test-u01")
    assert store.get("corral-test-u1").id == net.id == store.get(net.id[:6]).id
    conflist = net.conflist()
    bridge = conflist.plugins[0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "corral-test-u01"
    assert bridge["isGateway"] and not bridge["ipMasq"]  # NAT: one rule per network
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.99.251.0/24",
                                          "gateway": "10.99.251.254",
                                          "rangeStart": "10.99.251.128",
                                          "rangeEnd": "10.99.251.254"}]]
    assert [p["type"] for p in conflist.plugins] == ["bridge", "portmap", "tuning"]
    bare = net.conflist(ports=False, mac=False)
    assert [p["type"] for p in bare.plugins] == ["bridge"]  # nothing for them to do
    assert {"portMappings", "ips", "mac"} <= conflist.capabilities
    internal = store.create("corral-test-u2", subnets=["10.99.252.0/24"], internal=True,
                            bridge="corral-test-u02")
    plugins = internal.conflist().plugins
    assert not plugins[0]["ipMasq"] and not plugins[0]["isGateway"]
    assert "routes" not in plugins[0]["ipam"]
    assert "portmap" not in [p["type"] for p in plugins]
    assert store.ensure_default().subnets[0].subnet == "10.99.250.0/24"
    assert sorted(n.name for n in store.list()) == ["corral-test-u1", "corral-test-u2",
                                                    "corral-test-udef"]


@pytest.mark.parametrize("kwargs, word", [
    ({"subnets": ["10.99.251.0/25"]}, "overlaps"),
    ({"subnets": ["10.99.253.0/24"], "gateways": ["10.99.254.1"]}, "gateway"),
    ({"subnets": ["10.99.253.0/24"], "ip_ranges": ["10.98.0.0/24"]}, "ip-range"),
    ({"subnets": ["banana"]}, "not a subnet"),
    ({"subnets": ["10.99.253.0/24"], "bridge": "a-name-far-too-long"}, "bridge name"),
    ({"gateways": ["10.1.1.1"]}, "--subnet"),
])
def test_network_create_refuses(tmp_path, kwargs, word):
    store = NetworkStore(tmp_path)
    store.create("corral-test-u1", subnets=["10.99.251.0/24"], bridge="corral-test-u01")
    with pytest.raises(InvalidArgument, match=word):
        store.create("corral-test-u3", **kwargs)
    assert [n.name for n in store.list()] == ["corral-test-u1"]


def test_network_names_are_checked(tmp_path):
    store = NetworkStore(tmp_path)
    for bad in ("host", "none", "a/b", "-x", ""):
        with pytest.raises(InvalidArgument):
            store.create(bad)
    store.create("corral-test-u1", subnets=["10.99.251.0/24"], bridge="corral-test-u01")
    with pytest.raises(AlreadyExists):
        store.create("corral-test-u1", subnets=["10.99.249.0/24"])


def test_hosts_render_and_in_place_write(tmp_path):
    text = hosts.render([("10.0.0.2", ["h", "name"])], [("10.0.0.3", ["peer", "alias"])],
                        [("extra.test", "10.0.0.9")])
    assert text.splitlines()[2:] == ["10.0.0.2\th name", "10.0.0.3\tpeer alias",
                                     "10.0.0.9\textra.test"]
    path = tmp_path / "hosts"
    hosts.write(path, "first\n", in_place=False)
    inode = path.stat().st_ino
    hosts.write(path, "second\n", in_place=True)
    assert path.read_text() == "second\n" and path.stat().st_ino == inode
