"""`cp` (both ways; stopped and running containers, volumes, tmpfs), `commit` (then run
the new image), `top`, `stats`, `info`, `version`, and the engine-backed `rename`,
`port`, `container prune` — end to end through the `corral` CLI on real containers."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from tests.integration.engine_options_support import (
    CORRAL,
    CORRAL_RUNTIME,
    RUNC,
    SpecRunner,
    cleanup_root,
    make_store_with_busybox,
    start_detached,
    stop_detached,
)


@pytest.fixture(params=["corral", "runc"])
def runner(request):
    if os.geteuid() != 0:
        pytest.skip("needs root: creates namespaces, mounts and cgroups")
    binary = CORRAL_RUNTIME if request.param == "corral" else RUNC
    if not os.path.exists(binary):
        pytest.skip(f"{binary} is not installed")
    root, image = make_store_with_busybox()
    made = SpecRunner(root, binary, image)
    try:
        yield made
    finally:
        for record in made.store.list_containers():
            stop_detached(made, record.id)
        cleanup_root(root)


def corral(runner, *args, check=True, timeout=120):
    result = subprocess.run([CORRAL, "--root", str(runner.root), "--runtime", runner.runtime,
                             *args], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"corral {args}: {result.returncode}\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def runtime_exec(runner, cid, *argv):
    return subprocess.run([runner.runtime, "--root", str(runner.runtime_root), "exec", cid,
                           *argv], capture_output=True, text=True, timeout=60, check=False)


def sh(script, **config):
    return {"command": ["sh", "-c", script], **config}


def in_layer(runner, cid, path):
    """(exists, text, uid) of `path` in the stopped container's filesystem."""
    rootfs = runner.store.mount(cid)
    try:
        target = rootfs / path.lstrip("/")
        if not target.exists():
            return False, None, None
        return True, target.read_text() if target.is_file() else None, target.stat().st_uid
    finally:
        runner.store.unmount(cid)


# -- cp -------------------------------------------------------------------------------------


def test_cp_into_and_out_of_a_stopped_container(runner, tmp_path):
    r = runner.run(sh("mkdir -p /out/sub && echo made > /out/sub/f && echo top > /out/t"),
                   keep=True)
    cid = r.container_id
    host_file = tmp_path / "host.txt"
    host_file.write_text("from host\n")
    os.chown(host_file, 1234, 1234)
    # host -> container: into an existing directory, owned by root unless -a
    corral(runner, "cp", str(host_file), f"{cid}:/tmp/")
    assert in_layer(runner, cid, "/tmp/host.txt") == (True, "from host\n", 0)
    corral(runner, "cp", "-a", str(host_file), f"{cid[:12]}:/tmp/kept.txt")
    assert in_layer(runner, cid, "/tmp/kept.txt")[2] == 1234
    # container -> host: a file, a directory, and a directory's content
    corral(runner, "cp", f"{cid}:/out/t", str(tmp_path / "t-copy"))
    assert (tmp_path / "t-copy").read_text() == "top\n"
    corral(runner, "cp", f"{cid}:/out", str(tmp_path / "out-copy"))
    assert (tmp_path / "out-copy/sub/f").read_text() == "made\n"
    (tmp_path / "existing").mkdir()
    corral(runner, "cp", f"{cid}:/out", str(tmp_path / "existing"))
    assert (tmp_path / "existing/out/t").exists()
    (tmp_path / "content").mkdir()
    corral(runner, "cp", f"{cid}:/out/.", str(tmp_path / "content"))
    assert sorted(os.listdir(tmp_path / "content")) == ["sub", "t"]
    # a directory from the host into the container
    (tmp_path / "tree/a").mkdir(parents=True)
    (tmp_path / "tree/a/b").write_text("b\n")
    corral(runner, "cp", str(tmp_path / "tree"), f"{cid}:/srv")
    assert in_layer(runner, cid, "/srv/a/b")[1] == "b\n"
    # tar to stdout
    result = subprocess.run([CORRAL, "--root", str(runner.root), "cp", f"{cid}:/out", "-"],
                            capture_output=True, timeout=60, check=True)
    listing = subprocess.run(["tar", "-tf", "-"], input=result.stdout, capture_output=True,
                             check=True).stdout.decode().split()
    assert "out/sub/f" in listing


def test_cp_symlinks_stay_inside_the_container(runner, tmp_path):
    r = runner.run(sh("ln -s / /escape && ln -s /etc/passwd /pw"), keep=True)
    cid = r.container_id
    marker = tmp_path / "marker"
    marker.write_text("m\n")
    # /escape/<host tmp path> must resolve inside the container, not on the host
    corral(runner, "cp", str(marker), f"{cid}:/escape{tmp_path}/", check=False)
    assert marker.read_text() == "m\n" and len(os.listdir(tmp_path)) == 1
    corral(runner, "cp", f"{cid}:/pw", str(tmp_path / "pw"))
    assert os.path.islink(tmp_path / "pw")  # the link itself, like docker cp
    corral(runner, "cp", "-L", f"{cid}:/pw", str(tmp_path / "pw2"))
    assert "root:x:0:0" in (tmp_path / "pw2").read_text()


def test_cp_running_container_sees_its_mounts(runner, tmp_path):
    cid = start_detached(runner, sh("sleep 1000", tmpfs=["/scratch"]))
    assert runtime_exec(runner, cid, "sh", "-c", "echo live > /scratch/t").returncode == 0
    corral(runner, "cp", f"{cid}:/scratch/t", str(tmp_path / "t"))
    assert (tmp_path / "t").read_text() == "live\n"
    (tmp_path / "in").write_text("pushed\n")
    corral(runner, "cp", str(tmp_path / "in"), f"{cid}:/scratch/in")
    assert runtime_exec(runner, cid, "cat", "/scratch/in").stdout == "pushed\n"


def test_cp_into_a_volume_of_a_stopped_container(runner, tmp_path):
    from corral.engine.volumes import VolumeStore

    r = runner.run(sh("true", volumes=["corral-test-cpvol:/data"]), keep=True)
    (tmp_path / "f").write_text("v\n")
    corral(runner, "cp", str(tmp_path / "f"), f"{r.container_id}:/data/f")
    data = VolumeStore.for_store(runner.store).data_dir("corral-test-cpvol")
    assert (data / "f").read_text() == "v\n"


def test_cp_errors(runner, tmp_path):
    r = runner.run(sh("true"), keep=True)
    missing = corral(runner, "cp", f"{r.container_id}:/nope", str(tmp_path), check=False)
    assert missing.returncode == 125 and "could not find" in missing.stderr
    both = corral(runner, "cp", str(tmp_path), str(tmp_path), check=False)
    assert both.returncode == 125 and "CONTAINER:PATH" in both.stderr
    nobody = corral(runner, "cp", "corral-test-none:/x", str(tmp_path), check=False)
    assert nobody.returncode == 125 and "not found" in nobody.stderr
    nosrc = corral(runner, "cp", str(tmp_path / "nope"), f"{r.container_id}:/", check=False)
    assert nosrc.returncode == 125 and "no such file" in nosrc.stderr


# -- commit -------------------------------------------------------------------------------------


def test_commit_then_run_the_new_image(runner):
    r = runner.run(sh("echo committed > /hello && rm /etc/group"), keep=True)
    name = "corral-test-committed:v1"
    out = corral(runner, "commit", "--change", 'CMD ["cat", "/hello"]', "--change",
                 "ENV FROM_COMMIT=1", "-m", "my message", "-a", "corral-test",
                 r.container_id, name).stdout.strip()
    assert len(out) == 64
    again = runner.run({}, image=name)
    assert again.code == 0 and again.out == "committed\n"
    env = runner.run(sh("echo $FROM_COMMIT; ls /etc/group 2>&1 || echo gone"), image=name)
    assert env.out.splitlines() == ["1", "ls: /etc/group: No such file or directory", "gone"]
    history = corral(runner, "history", name).stdout
    assert "my message" in history
    [inspect] = json.loads(corral(runner, "inspect", name).stdout)
    assert len(inspect["RootFS"]["Layers"]) == 2
    assert inspect["Config"]["Cmd"] == ["cat", "/hello"] and inspect["Author"] == "corral-test"
    assert "corral commit sh -c echo committed" in inspect["History"][-1]["created_by"]
    # the parent's layer is shared, not copied
    parent = runner.store.image(runner.image)
    child = runner.store.image(name)
    assert runner.store.layer(child.top_layer).parent == parent.top_layer


def test_commit_bad_change(runner):
    r = runner.run(sh("true"), keep=True)
    bad = corral(runner, "commit", "--change", "BOGUS x", r.container_id,
                 "corral-test-bad", check=False)
    assert bad.returncode == 125 and "BOGUS" in bad.stderr
    assert all("corral-test-bad" not in " ".join(i.names)
               for i in runner.store.list_images())


# -- top / stats -----------------------------------------------------------------------------


def test_top(runner):
    cid = start_detached(runner, sh("sleep 1000"))
    out = corral(runner, "top", cid).stdout
    assert "sleep 1000" in out and "PID" in out.splitlines()[0]
    out = corral(runner, "top", cid, "-o", "pid,comm").stdout
    assert out.splitlines()[0].split() == ["PID", "COMMAND"]
    stop_detached(runner, cid, remove=False)
    stopped = corral(runner, "top", cid, check=False)
    assert stopped.returncode == 125 and "not running" in stopped.stderr


def test_stats(runner):
    cid = start_detached(runner, sh("sleep 1000", memory="64m"))
    rows = json.loads(corral(runner, "stats", "--no-stream", "--format", "json", cid).stdout)
    [row] = rows
    assert row["id"] == cid and row["mem_limit"] == 64 << 20 and row["pids"] >= 1
    assert 0 < row["mem_usage"] < 64 << 20
    table = corral(runner, "stats", "--no-stream").stdout
    assert cid[:12] in table and "MEM USAGE" in table
    stop_detached(runner, cid, remove=False)
    stopped = corral(runner, "stats", "--no-stream", cid, check=False)
    assert stopped.returncode == 125 and "not running" in stopped.stderr


# -- info / version ----------------------------------------------------------------------------


def test_info_and_version(runner):
    runner.run(sh("true"), keep=True)
    info = json.loads(corral(runner, "info", "--format", "json").stdout)
    assert info["store"]["graphRoot"] == str(runner.root)
    assert info["store"]["imageStore"]["number"] == 1
    assert info["store"]["containerStore"]["number"] == 1
    assert info["host"]["ociRuntime"]["path"] == runner.runtime
    assert "corral info" not in corral(runner, "info").stdout
    version = json.loads(corral(runner, "version", "--format", "json").stdout)
    assert version["Client"]["Version"]
    assert "Version:" in corral(runner, "version").stdout


# -- engine-backed: rename, port, container prune, top/stats of engine containers -------------


def test_engine_containers_top_stats_rename_port_prune(runner):
    run = corral(runner, "run", "-d", "--name", "corral-test-live", runner.image, "sleep", "1000")
    live = run.stdout.strip()
    corral(runner, "run", "--name", "corral-test-done", runner.image, "true")
    corral(runner, "create", "--name", "corral-test-new", runner.image, "true")
    assert "sleep 1000" in corral(runner, "top", "corral-test-live").stdout
    [row] = json.loads(corral(runner, "stats", "--no-stream", "--format", "json").stdout)
    assert row["id"] == live and row["pids"] >= 1
    corral(runner, "rename", "corral-test-live", "corral-test-renamed")
    names = corral(runner, "ps", "-a", "--format", "json").stdout
    assert "corral-test-renamed" in names and "corral-test-live" not in names
    taken = corral(runner, "rename", "corral-test-renamed", "corral-test-done", check=False)
    assert taken.returncode == 125
    assert corral(runner, "port", "corral-test-renamed").stdout == ""
    pruned = corral(runner, "container", "prune").stdout.split()
    assert len(pruned) == 2 and live not in pruned
    left = json.loads(corral(runner, "ps", "-a", "--format", "json").stdout)
    assert [c["Id"] for c in left] == [live]
    corral(runner, "rm", "-f", live)


def test_cp_tar_from_stdin(runner, tmp_path):
    import io
    import tarfile

    r = runner.run(sh("true"), keep=True)
    cid = r.container_id
    (tmp_path / "pkg/sub").mkdir(parents=True)
    (tmp_path / "pkg/sub/f").write_text("tarred\n")
    data = subprocess.run(["tar", "-C", str(tmp_path), "-cf", "-", "pkg"], capture_output=True,
                          check=True).stdout

    def cp_stdin(payload: bytes, dest: str):
        return subprocess.run([CORRAL, "--root", str(runner.root), "--runtime", runner.runtime,
                               "cp", "-", f"{cid}:{dest}"], input=payload,
                              capture_output=True, timeout=60, check=False)

    assert cp_stdin(data, "/tmp").returncode == 0
    assert in_layer(runner, cid, "/tmp/pkg/sub/f")[1] == "tarred\n"

    def evil(members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for info, payload in members:
                tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
        return buf.getvalue()

    up = tarfile.TarInfo("../escape")
    up.size = 1
    link = tarfile.TarInfo("l")
    link.type = tarfile.SYMTYPE
    link.linkname = str(tmp_path)
    through = tarfile.TarInfo("l/owned")
    through.size = 1
    over = tarfile.TarInfo("l")
    over.size = 1
    for payload in (evil([(up, b"x")]), evil([(link, None), (through, b"x")]),
                    evil([(link, None), (over, b"x")])):
        result = cp_stdin(payload, "/tmp")
        assert result.returncode == 125
        assert b"outside" in result.stderr or b"symlink" in result.stderr
    assert not (tmp_path / "owned").exists()
    assert not in_layer(runner, cid, "/escape")[0]
    bad = cp_stdin(b"not a tar" * 100, "/tmp")
    assert bad.returncode == 125


def test_cp_into_container_never_follows_its_symlinks(runner, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_text("host\n")
    # the container plants symlinks to host paths where the copy will go
    r = runner.run(sh(f"mkdir -p /srv/tree && ln -s {victim} /srv/tree/a && "
                      f"ln -s {victim}/file /srv/link"), keep=True)
    cid = r.container_id
    (tmp_path / "tree/a").mkdir(parents=True)
    (tmp_path / "tree/a/file").write_text("pushed\n")
    merged = corral(runner, "cp", str(tmp_path / "tree"), f"{cid}:/srv", check=False)
    assert merged.returncode == 125 and "non-directory" in merged.stderr
    (tmp_path / "new").write_text("pushed\n")
    # a symlink destination is resolved inside the container (here: a missing directory)
    via_link = corral(runner, "cp", str(tmp_path / "new"), f"{cid}:/srv/link", check=False)
    assert via_link.returncode == 125 and "no such directory" in via_link.stderr
    assert (victim / "file").read_text() == "host\n"
    assert sorted(os.listdir(victim)) == ["file"]


def test_monitor_cleanup_off_gives_conmon_no_exit_command(runner):
    """Engine.start(monitor_cleanup=False) (the CRI server's): conmon runs no exit
    command; by default it runs the exit hook."""
    from corral.engine.config import ContainerConfig
    from corral.engine.engine import Engine

    engine = Engine(runner.root, runtime=runner.runtime)
    argvs = {}
    for monitor_cleanup in (True, False):
        c = engine.create(ContainerConfig(image=runner.image, command=["sleep", "300"],
                                          network="none", runtime=runner.runtime))
        try:
            c = engine.start(c.id, monitor_cleanup=monitor_cleanup)
            with open(f"/proc/{c.state.conmon_pid}/cmdline", "rb") as f:
                argvs[monitor_cleanup] = f.read().split(b"\0")
        finally:
            engine.remove(c.id, force=True)
    assert b"--exit-command" in argvs[True]
    assert b"--exit-command" not in argvs[False]


def test_store_open_writes_no_records_when_nothing_needs_repair(runner):
    """The repair run by every Store.open rewrites nothing when nothing changed."""
    from corral.storage import Store

    cid = corral(runner, "create", "--network", "none", runner.image, "true").stdout.strip()
    records = [runner.root / "storage" / name for name in ("containers.json", "layers.json")]
    before = [p.stat().st_mtime_ns for p in records]
    Store.open(runner.root)
    Store.open(runner.root)
    assert [p.stat().st_mtime_ns for p in records] == before
    corral(runner, "rm", cid)
