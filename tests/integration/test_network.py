"""Networking through CNI on real containers: the standard plugins from
containernetworking-plugins, real bridges, veths, iptables rules and netns.

Traffic goes only to 127.0.0.1 and to the test's own containers. Each test has its own
store root; networks it makes are named `corral-test-*` with bridges `corral-test-XYZ`;
teardown removes containers and networks and checks nothing of theirs is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from tests.integration.test_engine_cli import (  # noqa: F401 - fixtures
    CORRAL,
    Corral,
    _conmons,
    _until,
    corral,
    image_root,
)
from tests.support.network import leases, veths_on

pytestmark = [
    pytest.mark.skipif(shutil.which("conmon") is None, reason="needs conmon"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                       reason="needs containernetworking-plugins in /usr/lib/cni"),
]

HTTPD = "mkdir -p /www && echo \"$0\" > /www/index.html && exec httpd -f -p 80 -h /www"


def _free_prefix() -> str:
    """`10.99.N` for a /24 that no route on the host uses (test sessions run side by side)."""
    import secrets

    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"],
                            capture_output=True, text=True, check=True).stdout
    start = 130 + secrets.randbelow(60)
    for third in range(start, start + 60):
        if f"10.99.{third % 190}.0/24" not in routes and third % 190 > 100:
            return f"10.99.{third % 190}"
    raise AssertionError("no free 10.99.N.0/24 for a test network")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_veths_on, _leases = veths_on, leases


def _rules_mentioning(text: str) -> list[str]:
    out = []
    for table in ("filter", "nat"):
        dump = subprocess.run(["iptables-save", "-t", table], capture_output=True,
                              text=True, check=True).stdout
        out += [line for line in dump.splitlines() if text in line]
    return out


class Net:
    """A network this test made (unique name and bridge)."""

    def __init__(self, corral: Corral, *args: str) -> None:
        tag = uuid.uuid4().hex
        self.name = f"corral-test-{tag[:8]}"
        self.bridge = f"corral-test-{tag[8:11]}"
        corral("network", "create", "--interface-name", self.bridge, *args, self.name)
        self.info = json.loads(corral("network", "inspect", self.name).stdout)[0]
        self.subnet = self.info["subnets"][0]["subnet"]


@pytest.fixture
def net_corral(corral):
    made: list[Net] = []

    def network(*args: str) -> Net:
        n = Net(corral, *args)
        made.append(n)
        return n

    corral.network = network
    yield corral
    subprocess.run(corral.argv("rm", "-af"), capture_output=True, timeout=120)
    left = []
    for n in made:  # remove everything first, then complain
        subprocess.run(corral.argv("network", "rm", "-f", n.name), capture_output=True,
                       timeout=60)
        if os.path.exists(f"/sys/class/net/{n.bridge}"):
            left.append(f"bridge {n.bridge} ({_veths_on(n.bridge)})")
            subprocess.run(["ip", "link", "delete", n.bridge], capture_output=True)
        if _leases(n.name):
            left.append(f"leases on {n.name}: {_leases(n.name)}")
    assert left == [], left


def _ip_of(corral: Corral, ref: str, network: str | None = None) -> str:
    settings = corral.inspect(ref)["NetworkSettings"]
    if network is None:
        return settings["IPAddress"]
    return settings["Networks"][network]["IPAddress"]


def _wait_http(url: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- modes ---------------------------------------------------------------------------------
def test_network_none_has_only_loopback(net_corral):
    out = net_corral("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").stdout
    assert out.split() == ["lo"]


@pytest.mark.skipif("CORRAL_TEST_DEFAULT_SUBNET" not in os.environ,
                    reason="$CORRAL_CONFIG was set outside tests/conftest.py")
def test_default_network_gives_eth0_address_route_and_hosts(net_corral):
    out = net_corral("run", "--rm", "--name", "c-default", "busybox", "sh", "-c",
                     "ip -4 -o addr show eth0; ip route; cat /etc/hosts").stdout
    prefix = os.environ["CORRAL_TEST_DEFAULT_SUBNET"].rsplit(".", 1)[0] + "."
    assert f"inet {prefix}" in out
    assert f"default via {prefix}1 dev eth0" in out
    address = out.split("inet ")[1].split("/")[0]
    assert any(line.startswith(address) and "c-default" in line for line in out.splitlines())
    networks = json.loads(net_corral("network", "ls", "--format", "json").stdout)
    assert os.environ["CORRAL_TEST_DEFAULT_NETWORK"] in [n["name"] for n in networks]


def test_container_joins_another_containers_network(net_corral):
    net = net_corral.network()
    net_corral("run", "-d", "--name", "holder", "--network", net.name, "busybox",
               "sleep", "1000")
    ip = _ip_of(net_corral, "holder", net.name)
    out = net_corral("run", "--rm", "--network", "container:holder", "busybox",
                     "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"inet {ip}/" in out


# -- reaching containers -------------------------------------------------------------------
def test_published_port_on_loopback_reaches_httpd(net_corral):
    port = _free_port()
    net_corral("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox",
               "sh", "-c", HTTPD, "hello-from-web")
    assert _wait_http(f"http://127.0.0.1:{port}/") == b"hello-from-web\n"
    assert net_corral("port", "web").stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
    ports = net_corral.inspect("web")["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert f"127.0.0.1:{port}->80/tcp" in net_corral("ps").stdout


def test_published_port_without_host_port_gets_a_free_one(net_corral):
    net_corral("run", "-d", "--name", "web", "-p", "127.0.0.1::80", "busybox",
               "sh", "-c", HTTPD, "any-port")
    line = net_corral("port", "web").stdout.strip()
    port = int(line.rsplit(":", 1)[1])
    assert port > 0
    assert _wait_http(f"http://127.0.0.1:{port}/") == b"any-port\n"


def test_two_containers_talk_by_name_and_alias(net_corral):
    net = net_corral.network()
    net_corral("run", "-d", "--name", "server", "--network", net.name, "--network-alias",
               "db", "busybox", "sh", "-c", HTTPD, "by-name")
    _until(lambda: net_corral.inspect("server")["NetworkSettings"]["IPAddress"])
    out = net_corral("run", "--rm", "--name", "client", "--network", net.name, "busybox",
                     "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do "
                     "wget -q -O- http://server/ && break; sleep 0.2; done; "
                     "wget -q -O- http://db/").stdout
    assert out == "by-name\nby-name\n"
    # the peer learned the client's name too, and forgets it once the client is gone
    hosts = net_corral("exec", "server", "cat", "/etc/hosts").stdout
    assert "client" not in hosts
    assert "server" in hosts and "db" in hosts


def test_containers_on_different_networks_do_not_see_each_other(net_corral):
    a, b = net_corral.network(), net_corral.network()
    net_corral("run", "-d", "--name", "on-a", "--network", a.name, "busybox", "sh", "-c",
               HTTPD, "a")
    ip = _ip_of(net_corral, "on-a", a.name)
    r = net_corral("run", "--rm", "--network", b.name, "busybox", "sh", "-c",
                   f"grep -c on-a /etc/hosts; echo GET / | nc -w 2 {ip} 80", check=False)
    assert r.stdout == "0\n" and r.returncode != 0  # no name, and no route through the host
    r = net_corral("run", "--rm", "--network", a.name, "busybox", "sh", "-c",
                   f"echo GET / | nc -w 2 {ip} 80", check=False)
    assert "a" in r.stdout  # the same network does reach it


def test_internal_network_has_no_route_out(net_corral):
    internal = net_corral.network("--internal")
    outside = net_corral.network()
    net_corral("run", "-d", "--name", "outside", "--network", outside.name, "busybox",
               "sh", "-c", HTTPD, "outside")
    ip = _ip_of(net_corral, "outside", outside.name)
    r = net_corral("run", "--rm", "--network", internal.name, "busybox", "sh", "-c",
                   f"ip route; wget -q -O- http://{ip}/", check=False)
    assert "default" not in r.stdout
    assert r.returncode != 0 and "outside" not in r.stdout
    assert "unreachable" in r.stderr.lower()


def test_static_ip_mac_dns_and_add_host(net_corral):
    p = _free_prefix()
    net = net_corral.network("--subnet", f"{p}.0/24")
    out = net_corral("run", "--rm", "--network", net.name, "--ip", f"{p}.77",
                     "--mac-address", "02:42:0a:63:e7:4d", "--dns", "192.0.2.53",
                     "--dns-search", "example.test", "--add-host", f"gateway.test:{p}.1",
                     "-h", "myhost", "busybox", "sh", "-c",
                     "ip -o addr show eth0; ip -o link show eth0; cat /etc/resolv.conf "
                     "/etc/hosts; hostname").stdout
    assert f"inet {p}.77/24" in out
    assert "02:42:0a:63:e7:4d" in out
    assert "nameserver 192.0.2.53" in out and "search example.test" in out
    assert f"{p}.1\tgateway.test" in out
    assert f"{p}.77\tmyhost" in out
    assert out.strip().endswith("myhost")


def test_connect_and_disconnect_a_running_container(net_corral):
    extra = net_corral.network()
    net_corral("run", "-d", "--name", "multi", "--network", "none", "busybox", "sleep", "1000")
    r = net_corral("network", "connect", extra.name, "multi", check=False)
    assert r.returncode != 0 and "cannot join" in r.stderr  # --network none
    net_corral("run", "-d", "--name", "multi2", "busybox", "sleep", "1000")
    net_corral("network", "connect", extra.name, "multi2")
    links = net_corral("exec", "multi2", "ls", "/sys/class/net").stdout.split()
    assert links == ["eth0", "eth1", "lo"]
    ip = _ip_of(net_corral, "multi2", extra.name)
    assert ip.startswith(extra.subnet.rsplit(".", 1)[0])
    net_corral("network", "disconnect", extra.name, "multi2")
    links = net_corral("exec", "multi2", "ls", "/sys/class/net").stdout.split()
    assert links == ["eth0", "lo"]
    assert _leases(extra.name) == []


def test_several_networks_at_once(net_corral):
    a, b = net_corral.network(), net_corral.network()
    out = net_corral("run", "--rm", "--network", f"{a.name},{b.name}", "busybox",
                     "ip", "-4", "-o", "addr").stdout
    assert a.subnet.rsplit(".", 1)[0] in out and b.subnet.rsplit(".", 1)[0] in out
    assert " eth0 " in out and " eth1 " in out


def test_publish_all_maps_exposed_ports(net_corral):
    net_corral("create", "--name", "base", "--network", "none", "busybox", "true")
    net_corral("commit", "-c", "EXPOSE 80/tcp", "base", "corral-test-exposed")
    net_corral("run", "-d", "--name", "web", "-P", "corral-test-exposed", "sh", "-c", HTTPD,
               "published-all")
    line = net_corral("port", "web", "80").stdout.strip()
    assert line.startswith("80/tcp -> 0.0.0.0:")
    port = int(line.rsplit(":", 1)[1])
    assert _wait_http(f"http://127.0.0.1:{port}/") == b"published-all\n"


def test_cni_check_passes_then_sees_a_broken_interface(net_corral):
    net = net_corral.network()
    cid = net_corral("run", "-d", "--network", net.name, "busybox", "sleep", "1000"
                     ).stdout.strip()
    assert net_corral("network", "check", cid).returncode == 0
    pid = net_corral.inspect(cid)["State"]["Pid"]
    subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "addr", "flush", "dev", "eth0"],
                   check=True)
    r = net_corral("network", "check", cid, check=False)
    assert r.returncode == 1 and "bridge" in r.stdout and net.name in r.stdout


# -- cleanup on every path ------------------------------------------------------------------
def test_twenty_create_rm_cycles_leave_nothing(net_corral):
    net = net_corral.network()
    port = _free_port()
    for i in range(20):
        cid = net_corral("run", "-d", "--network", net.name, "-p", f"127.0.0.1:{port}:80",
                         "busybox", "sleep", "1000").stdout.strip()
        if i == 0:
            assert len(_veths_on(net.bridge)) == 1 and len(_leases(net.name)) == 1
            assert _rules_mentioning(cid[:12]) or _rules_mentioning(cid)
        net_corral("rm", "-f", cid)
        assert _rules_mentioning(cid) == [], f"iptables rules left for {cid}"
    assert _veths_on(net.bridge, gone=True) == []
    assert _leases(net.name) == []
    root = net_corral.root
    assert list((root / "engine" / "netns").glob("*")) == []
    assert list((root / "networks" / "cni" / "results").glob("*")) == []


def test_exit_and_rm_clean_up(net_corral):
    net = net_corral.network()
    net_corral("run", "--rm", "--network", net.name, "busybox", "true")
    cid = net_corral("run", "-d", "--network", net.name, "busybox", "true").stdout.strip()
    _until(lambda: net_corral.inspect(cid)["State"]["Status"] == "exited")
    _until(lambda: _veths_on(net.bridge, gone=True) == [] and _leases(net.name) == [])
    assert net_corral.inspect(cid)["NetworkSettings"]["Networks"] == {}


def test_restart_policy_reattaches_without_leaking(net_corral):
    net = net_corral.network()
    cid = net_corral("run", "-d", "--network", net.name, "--restart", "on-failure:2",
                     "busybox", "sh", "-c", "ip -4 -o addr show eth0 >> /proc/1/fd/1; "
                     "exit 3").stdout.strip()
    _until(lambda: net_corral.inspect(cid)["RestartCount"] == 2 and
           net_corral.inspect(cid)["State"]["Status"] == "exited", timeout=30)
    logs = net_corral("logs", cid).stdout
    assert logs.count("inet ") == 3  # a fresh attachment for each run
    _until(lambda: _leases(net.name) == [] and _veths_on(net.bridge, gone=True) == [])


def test_killed_monitor_is_reconciled(net_corral):
    net = net_corral.network()
    cid = net_corral("run", "-d", "--network", net.name, "busybox", "sleep", "1000"
                     ).stdout.strip()
    pid = net_corral.inspect(cid)["State"]["Pid"]
    for conmon in _conmons(net_corral.root):
        os.kill(conmon, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)  # nobody is left to run the cleanup
    _until(lambda: not os.path.exists(f"/proc/{pid}"))
    assert _leases(net.name) != []  # leaked, for now
    # the next container start reconciles
    net_corral("run", "--rm", "--network", "none", "busybox", "true")
    net_corral("run", "--rm", "--network", net.name, "busybox", "true")
    assert _leases(net.name) == [] and _veths_on(net.bridge, gone=True) == []
    assert net_corral.inspect(cid)["State"]["Status"] in ("stopped", "exited")
    assert net_corral("start", cid).returncode == 0
    assert _leases(net.name) != []


def test_concurrent_starts_get_distinct_addresses_and_one_port_owner(net_corral):
    from concurrent.futures import ThreadPoolExecutor

    net = net_corral.network()
    port = _free_port()

    def run(i: int) -> subprocess.CompletedProcess:
        return net_corral("run", "-d", "--name", f"par{i}", "--network", net.name, "-p",
                          f"127.0.0.1:{port}:80", "busybox", "sleep", "1000", check=False)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [r.stderr for r in results]
    assert all("in use" in r.stderr or "published" in r.stderr
               for r in results if r.returncode != 0)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: net_corral(
            "run", "-d", "--name", f"free{i}", "--network", net.name, "busybox", "sleep",
            "1000", check=False), range(4)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    ips = {_ip_of(net_corral, f"free{i}", net.name) for i in range(4)}
    assert len(ips) == 4
    assert len(_leases(net.name)) == 5
    # started at the same moment, each still knows every other by name
    for i in range(4):
        hosts = net_corral("exec", f"free{i}", "cat", "/etc/hosts").stdout
        assert all(f"free{j}" in hosts for j in range(4)), hosts


# -- bad input ------------------------------------------------------------------------------
def test_unknown_network_is_refused_and_nothing_made(net_corral):
    r = net_corral("run", "--network", "corral-test-nope", "busybox", "true", check=False)
    assert r.returncode == 125 and "corral-test-nope" in r.stderr
    assert net_corral("ps", "-aq").stdout.strip() == ""


def test_overlapping_subnet_is_refused(net_corral):
    p = _free_prefix()
    net = net_corral.network("--subnet", f"{p}.0/24")
    name = f"corral-test-{uuid.uuid4().hex[:8]}"
    r = net_corral("network", "create", "--subnet", f"{p}.128/25", name, check=False)
    assert r.returncode != 0 and "overlaps" in r.stderr and net.name in r.stderr
    assert net_corral("network", "inspect", name, check=False).returncode != 0
    q = _free_prefix()
    r = net_corral("network", "create", "--subnet", f"{q}.0/24", "--gateway",
                   "192.0.2.1", name, check=False)
    assert r.returncode != 0 and "gateway" in r.stderr


def test_port_already_taken_is_refused_and_nothing_left(net_corral):
    net = net_corral.network()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = net_corral("run", "--rm", "--network", net.name, "-p", f"127.0.0.1:{port}:80",
                       "busybox", "true", check=False)
    assert r.returncode == 125 and f"{port}" in r.stderr and "in use" in r.stderr
    assert _leases(net.name) == [] and _veths_on(net.bridge, gone=True) == []
    assert list((net_corral.root / "engine" / "netns").glob("*")) == []


def test_bad_publish_flags_are_refused(net_corral):
    for flag, word in (("80:abc", "container port"), ("70000:80", "out of range"),
                       ("80/icmp", "protocol"), ("1.2.3:80:80", "host IP")):
        r = net_corral("create", "-p", flag, "busybox", check=False)
        assert r.returncode == 125 and word in r.stderr, (flag, r.stderr)
    r = net_corral("create", "--network", "host", "-p", "80", "busybox", check=False)
    assert r.returncode == 125 and "bridge network" in r.stderr
    assert net_corral("ps", "-aq").stdout.strip() == ""


def test_missing_plugin_is_reported_and_nothing_left(net_corral, tmp_path, monkeypatch):
    net = net_corral.network()
    conf = tmp_path / "corral.conf"
    conf.write_text(Path(os.environ["CORRAL_CONFIG"]).read_text()
                    + f'cni_plugin_dirs = ["{tmp_path}/no-plugins"]\n')
    env = dict(os.environ, CORRAL_CONFIG=str(conf))
    r = subprocess.run([CORRAL, "--root", str(net_corral.root), "run", "--rm", "--network",
                        net.name, "busybox", "true"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 125 and "bridge" in r.stderr and "no-plugins" in r.stderr
    assert _leases(net.name) == [] and _veths_on(net.bridge, gone=True) == []
    assert list((net_corral.root / "engine" / "netns").glob("*")) == []


def test_info_reports_whether_the_plugins_are_ready(net_corral, tmp_path):
    info = json.loads(net_corral("info", "--format", "json").stdout)["network"]
    assert info["ready"] is True and "/usr/lib/cni" in info["cniPluginDirs"]
    conf = tmp_path / "corral.conf"
    conf.write_text(Path(os.environ["CORRAL_CONFIG"]).read_text()
                    + f'cni_plugin_dirs = ["{tmp_path}/none"]\n')
    r = subprocess.run([CORRAL, "--root", str(net_corral.root), "info", "--format", "json"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, CORRAL_CONFIG=str(conf)))
    info = json.loads(r.stdout)["network"]
    assert info["ready"] is False and "bridge" in info["problem"]


def test_network_in_use_is_not_removed_without_force(net_corral):
    net = net_corral.network()
    net_corral("create", "--name", "user", "--network", net.name, "busybox", "true")
    r = net_corral("network", "rm", net.name, check=False)
    assert r.returncode == 2 and "user" in r.stderr
    net_corral("network", "rm", "-f", net.name)
    assert net_corral("ps", "-aq").stdout.strip() == ""
    assert not os.path.exists(f"/sys/class/net/{net.bridge}")


def test_prune_removes_unused_networks_only(net_corral):
    used, unused = net_corral.network(), net_corral.network()
    net_corral("create", "--name", "user", "--network", used.name, "busybox", "true")
    out = net_corral("network", "prune", "-f").stdout.split()
    assert unused.name in out and used.name not in out
    names = net_corral("network", "ls", "-q").stdout.split()
    assert used.name in names and unused.name not in names


# -- a host whose FORWARD policy is DROP ------------------------------------------------------
@pytest.fixture
def private_host(tmp_path):
    """A network namespace standing in for the host (its own bridges and iptables, FORWARD
    policy DROP) with an "outside" namespace behind a veth that serves HTTP."""
    tag = uuid.uuid4().hex[:6]
    host, outside = f"corral-test-h{tag}", f"corral-test-o{tag}"
    for ns in (host, outside):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        def sh(ns: str, script: str) -> None:
            subprocess.run(["ip", "netns", "exec", ns, "sh", "-ec", script], check=True)

        subprocess.run(["ip", "link", "add", f"cth{tag}", "netns", host, "type", "veth",
                        "peer", "name", f"cto{tag}", "netns", outside], check=True)
        sh(host, f"ip link set lo up; ip addr add 198.18.0.1/30 dev cth{tag}; "
                 f"ip link set cth{tag} up; iptables -P FORWARD DROP")
        # no route back to the containers' subnets: only NAT'd traffic gets answers
        sh(outside, f"ip link set lo up; ip addr add 198.18.0.2/30 dev cto{tag}; "
                    f"ip link set cto{tag} up")
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("from-outside\n")
        server = subprocess.Popen(["ip", "netns", "exec", outside, "busybox", "httpd", "-f",
                                   "-p", "198.18.0.2:80", "-h", str(www)])
        yield host
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for ns in (host, outside):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_forward_drop_policy_still_lets_containers_out_and_keeps_networks_apart(
        net_corral, private_host):
    """Corral's per-bridge rules (network.isolation) in place of the CNI firewall plugin
    and the bridge plugin's per-container ipMasq: with FORWARD DROP, a container reaches
    the outside through NAT (the outside has no route back to the container); without
    the rule accepting its bridge's traffic it would not; another network stays
    unreachable."""
    def corral(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["nsenter", f"--net=/run/netns/{private_host}",
                            *net_corral.argv(*args)], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert not check or r.returncode == 0, r.stderr
        return r

    def iptables(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", private_host, "iptables", *args],
                              capture_output=True, text=True)

    tag = uuid.uuid4().hex
    name, bridge = f"corral-test-{tag[:8]}", f"corral-test-{tag[8:11]}"
    other, other_bridge = f"corral-test-{tag[11:19]}", f"corral-test-{tag[19:22]}"
    corral("network", "create", "--interface-name", bridge, "--subnet", "10.99.251.0/24", name)
    corral("network", "create", "--interface-name", other_bridge, "--subnet",
           "10.99.252.0/24", other)
    get = "echo 'GET / HTTP/1.0' | nc -w 3 198.18.0.2 80"
    try:
        r = corral("run", "--rm", "--network", name, "busybox", "sh", "-c", get)
        assert "from-outside" in r.stdout
        assert iptables("-C", "CORRAL-FORWARD", "-i", bridge, "-j", "ACCEPT").returncode == 0
        assert iptables("-t", "nat", "-C", "CORRAL-POSTROUTING", "-s", "10.99.251.0/24", "!",
                        "-o", bridge, "-j", "MASQUERADE").returncode == 0
        corral("run", "-d", "--name", "peer", "--network", other, "busybox", "sh", "-c",
               HTTPD, "peer")
        peer_ip = json.loads(corral("container", "inspect", "peer").stdout)[0][
            "NetworkSettings"]["Networks"][other]["IPAddress"]
        r = corral("run", "--rm", "--network", name, "busybox", "sh", "-c",
                   f"echo 'GET / HTTP/1.0' | nc -w 2 {peer_ip} 80", check=False)
        assert "peer" not in r.stdout  # isolated
        assert iptables("-D", "CORRAL-FORWARD", "-i", bridge, "-j", "ACCEPT").returncode == 0
        r = corral("run", "--rm", "--network", name, "busybox", "sh", "-c", get, check=False)
        assert "from-outside" not in r.stdout  # the rule is what lets it out
    finally:
        corral("rm", "-af", check=False)
        for n, b in ((name, bridge), (other, other_bridge)):
            corral("network", "rm", "-f", n, check=False)
            with contextlib.suppress(OSError):
                os.unlink(f"/run/corral/isolation/{b}")


def test_unused_isolation_chains_are_removed_only_without_rules():
    """network.isolation.remove_chains_if_unused (the test session's cleanup of chains it
    made): with a bridge's rules in place the chains stay; once removed, the chains and
    their jumps go. Run in a netns of its own, whose iptables are its own."""
    ns = f"corral-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    bridge = f"corral-test-{uuid.uuid4().hex[:3]}"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / 'src')!r})\n"
            "from corral.network import isolation as i\n"
            f"i.ensure({bridge!r}, subnets=['10.99.250.0/24'], force=True)\n"
            "a = i.chains_exist(); b = i.remove_chains_if_unused()\n"
            f"i.remove({bridge!r}, ['10.99.250.0/24'])\n"
            "print(a, b, i.remove_chains_if_unused(), i.chains_exist())\n")
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.stdout.split() == ["True", "False", "True", "False"], r.stderr
        rules = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                                "iptables -S; iptables -t nat -S"],
                               capture_output=True, text=True, check=True).stdout
        assert "CORRAL" not in rules
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
