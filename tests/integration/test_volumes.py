"""Named volumes on real containers: data outlives containers, `:ro` refuses writes,
first use copies the image's content, a volume in use cannot be removed without -f,
and the `corral volume` commands end to end. Runs on corral-runtime (the runtime only
sees bind mounts; the runtime-parametrized option tests cover runc)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from tests.integration.engine_options_support import (
    CORRAL,
    CORRAL_RUNTIME,
    SpecRunner,
    cleanup_root,
    make_store_with_busybox,
)

from corral.engine.volumes import VolumeInUse, VolumeStore


@pytest.fixture
def env():
    if os.geteuid() != 0:
        pytest.skip("needs root: creates namespaces, mounts and cgroups")
    root, image = make_store_with_busybox()
    try:
        runner = SpecRunner(root, CORRAL_RUNTIME, image)
        yield runner, VolumeStore.for_store(runner.store)
    finally:
        cleanup_root(root)


def corral(runner, *args, check=True):
    result = subprocess.run([CORRAL, "--root", str(runner.root), "--runtime", CORRAL_RUNTIME,
                             *args], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"corral {args}: {result.returncode}\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def sh(script, **config):
    return {"command": ["sh", "-c", script], **config}


def test_data_persists_across_containers(env):
    runner, volumes = env
    first = runner.run(sh("echo kept > /data/file", volumes=["corral-test-vol:/data"]))
    assert first.code == 0, first.err
    assert volumes.get("corral-test-vol").users == ()  # that container is gone
    second = runner.run(sh("cat /data/file", volumes=["corral-test-vol:/elsewhere/data"]))
    assert second.code == 1 or second.out == ""  # another path: not there
    third = runner.run(sh("cat /data/file", volumes=["corral-test-vol:/data"]))
    assert third.out == "kept\n"
    assert (volumes.data_dir("corral-test-vol") / "file").read_text() == "kept\n"


def test_readonly_volume_refuses_writes(env):
    runner, volumes = env
    runner.run(sh("echo x > /data/f", volumes=["corral-test-ro:/data"]))
    r = runner.run(sh("cat /data/f; echo y > /data/f 2>&1 || echo refused",
                      volumes=["corral-test-ro:/data:ro"]))
    assert r.out.splitlines()[0] == "x" and r.out.splitlines()[-1] == "refused"
    assert (volumes.data_dir("corral-test-ro") / "f").read_text() == "x\n"
    r = runner.run(sh("touch /m/g 2>/dev/null || echo refused",
                      mounts=["type=volume,source=corral-test-ro,target=/m,readonly"]))
    assert r.out.strip() == "refused"


def test_first_use_copies_image_content(env):
    runner, volumes = env

    def seed(rootfs):
        (rootfs / "srv/app").mkdir(parents=True)
        (rootfs / "srv/app/config").write_text("image default\n")
        os.chown(rootfs / "srv/app/config", 33, 33)
        os.chmod(rootfs / "srv/app", 0o750)

    r = runner.run(sh("cat /srv/app/config; stat -c '%u %a' /srv/app /srv/app/config",
                      volumes=["corral-test-seeded:/srv/app"]), prepare=seed)
    assert r.out.splitlines() == ["image default", "0 750", "33 644"]
    data = volumes.data_dir("corral-test-seeded")
    assert (data / "config").read_text() == "image default\n"
    # later uses do not copy again (the volume's content wins)
    (data / "config").write_text("changed\n")
    r = runner.run(sh("cat /srv/app/config", volumes=["corral-test-seeded:/srv/app"]),
                   prepare=seed)
    assert r.out == "changed\n"
    # nocopy: an empty volume stays empty
    r = runner.run(sh("ls -A /srv/app | wc -l", volumes=["corral-test-nocopy:/srv/app:nocopy"]),
                   prepare=seed)
    assert r.out.strip() == "0"


def test_anonymous_volume(env):
    runner, volumes = env
    r = runner.run(sh("echo a > /anon/f", volumes=["/anon"]))
    assert r.code == 0
    [volume] = volumes.list()
    assert volume.anonymous and (volumes.data_dir(volume.name) / "f").exists()


def test_volume_in_use_is_not_removed(env):
    runner, volumes = env
    r = runner.run(sh("true", volumes=["corral-test-busy:/data"]), keep=True)
    try:
        assert volumes.get("corral-test-busy").users == (r.container_id,)
        with pytest.raises(VolumeInUse, match=r.container_id):
            volumes.remove("corral-test-busy")
        result = corral(runner, "volume", "rm", "corral-test-busy", check=False)
        assert result.returncode == 2 and "being used" in result.stderr
        assert volumes.exists("corral-test-busy")
        pruned = corral(runner, "volume", "prune").stdout.split()
        assert "corral-test-busy" not in pruned
        # -f removes the container first, then the volume
        corral(runner, "volume", "rm", "-f", "corral-test-busy")
        assert not volumes.exists("corral-test-busy")
        assert all(c.id != r.container_id for c in runner.store.list_containers())
    finally:
        if any(c.id == r.container_id for c in runner.store.list_containers()):
            runner.remove(r.container_id)


def test_volume_cli(env):
    runner, _volumes = env
    assert corral(runner, "volume", "create", "--label", "team=a",
                  "corral-test-cli").stdout.strip() == "corral-test-cli"
    again = corral(runner, "volume", "create", "corral-test-cli", check=False)
    assert again.returncode == 125 and "already exists" in again.stderr
    anon = corral(runner, "volume", "create").stdout.strip()
    assert len(anon) == 64
    listed = corral(runner, "volume", "ls", "-q").stdout.split()
    assert set(listed) == {"corral-test-cli", anon}
    data = json.loads(corral(runner, "volume", "ls", "--format", "json").stdout)
    assert {v["Name"] for v in data} == {"corral-test-cli", anon}
    assert corral(runner, "volume", "ls", "-q", "--filter", "label=team=a").stdout.split() == \
        ["corral-test-cli"]
    [info] = json.loads(corral(runner, "volume", "inspect", "corral-test-cli").stdout)
    assert info["Labels"] == {"team": "a"} and info["Driver"] == "local"
    assert os.path.isdir(info["Mountpoint"])
    missing = corral(runner, "volume", "inspect", "corral-test-nope", check=False)
    assert missing.returncode == 125 and "no such volume" in missing.stderr
    bad = corral(runner, "volume", "create", "bad/name", check=False)
    assert bad.returncode == 125 and "not valid" in bad.stderr
    assert corral(runner, "volume", "rm", "nope", check=False).returncode == 1
    pruned = corral(runner, "volume", "prune", "--filter", "label=team=a").stdout.split()
    assert pruned == ["corral-test-cli"]
    assert corral(runner, "volume", "prune").stdout.split() == [anon]
    assert corral(runner, "volume", "ls", "-q").stdout == ""


def test_run_rm_removes_its_anonymous_volumes_only(env):
    runner, volumes = env
    result = corral(runner, "run", "--rm", "-v", "/anon", "-v", "corral-test-named:/named",
                    runner.image, "sh", "-c", "echo a > /anon/f")
    assert result.returncode == 0
    assert [v.name for v in volumes.list()] == ["corral-test-named"]
    kept = corral(runner, "run", "-v", "/anon", runner.image, "true")
    assert kept.returncode == 0
    assert len(volumes.list()) == 2  # without --rm the anonymous volume stays
