"""`corral build` against podman (buildah inside): the same Dockerfile on the same
busybox base (made by corral, loaded into podman's private store).

- the image corral builds, saved and loaded into podman, runs there with the same
  output and the same config (Cmd, Entrypoint, Env, User, WorkingDir, Labels,
  ExposedPorts, Volumes, StopSignal) as in corral;
- `podman build` of the same Dockerfile gives the same file tree (paths, types,
  permission bits, owners, contents, link targets) as corral's — also for COPY's
  destination rules, globs, --chmod/--chown forms, and `.dockerignore` patterns;
- the builder-side variable expansion gives the same config as podman build's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from tests.interop.conftest import (
    CORRAL_RUNTIME,
    PODMAN,
    RUNC,
    Podman,
    _remove_tree,
    ensure_containers_conf,
)

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")
BASE = "localhost/corral-test-build-base:latest"
DOCKERFILE = """\
FROM {base} AS builder
RUN mkdir -p /out && echo built > /out/artifact && ln -s artifact /out/link
FROM {base}
ARG VERSION=1.2
ENV APP=/srv/app VERSION=$VERSION
WORKDIR $APP
COPY files/ ./
COPY --chmod=0750 run.sh /usr/local/bin/
COPY --from=builder /out /opt/out
RUN echo "v=$VERSION" > version && mkdir -p data && chown nobody data && \\
    ln -s version current && rm /bin/vi && chmod 0444 conf/app.conf
ADD bundle.tar.gz /opt/bundle/
COPY --chown=1:1 owned/ /owned/
RUN rm -rf /var/spool && mkdir -p /var/spool/fresh && ln /srv/app/version /hardlink
USER nobody
EXPOSE 8080/tcp
VOLUME /srv/app/data
LABEL org.example.name=demo
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat version conf/app.conf /opt/out/link; id -u; pwd"]
"""
#: Mount points buildah's RUN leaves in its layers (empty files, 0755); corral removes
#: the mount points its runtime had to make, so they are not part of the comparison.
RUNTIME_FILES = {"etc/hosts", "etc/resolv.conf"}


def _corral(root: Path, *args: str, check: bool = True, timeout: float = 300
            ) -> subprocess.CompletedProcess:
    result = subprocess.run([CORRAL, "--root", str(root), *args], capture_output=True,
                            text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"corral {' '.join(args)} -> {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def env():
    if PODMAN is None:
        pytest.skip("podman is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root: podman with cgroupfs and a private rootful store")
    ensure_containers_conf()
    base = Path(tempfile.mkdtemp(prefix="corral-test-build-interop-", dir="/tmp"))
    for sub in ("root", "runroot", "tmp", "corral", "ctx/files/conf"):
        (base / sub).mkdir(parents=True)
    podman = Podman(RUNC or CORRAL_RUNTIME, base)
    corral_root = base / "corral"
    try:
        _corral(corral_root, "image", "busybox", BASE)
        _corral(corral_root, "save", "-o", str(base / "base.tar"), BASE)
        podman("load", "-q", "-i", str(base / "base.tar"), check=True)
        ctx = base / "ctx"
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=BASE))
        (ctx / "files" / "conf" / "app.conf").write_text("key=value\n")
        (ctx / "files" / "readme").write_text("readme\n")
        (ctx / "run.sh").write_text("#!/bin/sh\necho run\n")
        (ctx / "files" / "link").symlink_to("readme")
        (ctx / "owned" / "deep").mkdir(parents=True)
        (ctx / "owned" / "deep" / "x").write_text("x\n")
        os.chmod(ctx / "owned" / "deep", 0o750)
        with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as tar:
            for name, data in (("bin/tool", b"#!/bin/sh\n"), ("share/doc", b"doc\n")):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.uid, info.gid = len(data), 0o755, 7, 8
                info.mtime = 1_600_000_000
                tar.addfile(info, io.BytesIO(data))
        yield podman, corral_root, ctx
    finally:
        podman.remove_all_named()
        podman("rm", "-a", "-f", "-t", "0")
        podman("rmi", "-a", "-f")
        _remove_tree(base)


def _tree(data: bytes) -> dict[str, tuple]:
    """A flattened rootfs tar as {path: (type, mode, uid, gid, content digest | link)};
    hard links count as regular files with their target's content (which name of a
    hard-linked pair a tar stores as the link is the exporter's choice)."""
    tree = {}
    links: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            name = m.name.removeprefix("./").rstrip("/")
            if not name:
                continue
            content = ""
            kind = m.type
            if m.isfile():
                f = tar.extractfile(m)
                content = hashlib.sha256(f.read() if f else b"").hexdigest()
            elif m.islnk():
                links[name] = m.linkname.removeprefix("./")
                kind = tarfile.REGTYPE
            elif m.issym():
                content = m.linkname
            tree[name] = (kind, m.mode & 0o7777, m.uid, m.gid, content)
    for name, target in links.items():
        kind, mode, uid, gid, _ = tree[name]
        tree[name] = (kind, mode, uid, gid, tree[target][4])
    return tree


def _export_corral(root: Path, image: str) -> bytes:
    cid = _corral(root, "create", image).stdout.strip()
    try:
        out = subprocess.run([CORRAL, "--root", str(root), "export", cid], capture_output=True,
                             check=True, timeout=120).stdout
    finally:
        _corral(root, "rm", "-f", cid, check=False)
    return out


def _export_podman(podman: Podman, image: str) -> bytes:
    name = podman.new_name()
    podman("create", "--name", name, image, check=True)
    result = subprocess.run(podman.argv("export", name), capture_output=True, check=True,
                            timeout=120)
    return result.stdout


CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "User", "WorkingDir", "Labels", "ExposedPorts",
               "Volumes", "StopSignal")


def test_corral_image_runs_identically_in_podman(env):
    podman, root, ctx = env
    tag = "localhost/corral-test-built:latest"
    _corral(root, "build", "-t", tag, str(ctx))
    in_corral = _corral(root, "run", "--rm", "--network", "none", tag).stdout
    assert in_corral.splitlines() == ["v=1.2", "key=value", "built", "65534", "/srv/app"]
    archive = ctx.parent / "built.tar"
    _corral(root, "save", "-o", str(archive), tag)
    podman("load", "-q", "-i", str(archive), check=True)
    in_podman = podman("run", "--rm", "--network", "none", tag, check=True).stdout
    assert in_podman == in_corral
    inspected = json.loads(podman("image", "inspect", tag, check=True).stdout)[0]
    podman_config = inspected["Config"]
    from corral.storage import Store

    store = Store.open(root)
    ours = json.loads(store.content.read_bytes(store.image(tag).id))["config"]
    for key in CONFIG_KEYS:
        assert podman_config.get(key) == ours.get(key), key
    assert inspected["Id"] == store.image(tag).id.split(":", 1)[1]  # the same config bytes
    assert _tree(_export_podman(podman, tag)) == _tree(_export_corral(root, tag))


def test_podman_build_gives_the_same_file_tree(env):
    podman, root, ctx = env
    tag = "localhost/corral-test-compare:latest"
    _corral(root, "build", "-t", tag, str(ctx))
    podman("build", "--network", "host", "-t", tag, str(ctx), check=True, timeout=300)
    ours = _tree(_export_corral(root, tag))
    theirs = _tree(_export_podman(podman, tag))
    for path in RUNTIME_FILES:
        ours.pop(path, None)
        theirs.pop(path, None)
    only_ours = {k: v for k, v in ours.items() if theirs.get(k) != v}
    only_theirs = {k: v for k, v in theirs.items() if ours.get(k) != v}
    assert only_ours == only_theirs == {}
    config = json.loads(podman("image", "inspect", tag, check=True).stdout)[0]["Config"]
    from corral.storage import Store

    store = Store.open(root)
    ours_config = json.loads(store.content.read_bytes(store.image(tag).id))["config"]
    (config.get("Labels") or {}).pop("io.buildah.version", None)  # buildah's own label
    for key in CONFIG_KEYS:
        assert (config.get(key) or None) == (ours_config.get(key) or None), key


EXPANSION = """\
FROM {base}
ARG A=alpha
ARG EMPTY=
ENV B=${{A:-x}}_b C="${{UNSET:-def}}" D=${{A:+set}} E='$A single' F="double $A" G=\\$A H=${{A}}${{A}}
ENV K=${{EMPTY:-fallback}} L=${{EMPTY:+never}}x
ENV legacy value with  spaces $A
LABEL "quoted key"="v w" plain=${{B}} multi="a \\
b"
WORKDIR /w/${{A}}
WORKDIR sub
EXPOSE 80 81/udp ${{PORT:-8080}}
USER ${{A}}
STOPSIGNAL ${{SIG:-SIGQUIT}}
CMD echo "$A"
"""


def test_variable_expansion_matches_podman_build(env):
    """The builder-side expansion (ENV, LABEL, WORKDIR, EXPOSE, USER, STOPSIGNAL; quotes,
    escapes, :- and :+) gives the same config as podman build's."""
    podman, root, ctx = env
    tag = "localhost/corral-test-expansion:latest"
    work = ctx.parent / "expansion"
    work.mkdir()
    (work / "Dockerfile").write_text(EXPANSION.format(base=BASE))
    _corral(root, "build", "-t", tag, "--build-arg", "EMPTY=", str(work))
    podman("build", "-t", tag, "--build-arg", "EMPTY=", str(work), check=True, timeout=300)
    theirs = json.loads(podman("image", "inspect", tag, check=True).stdout)[0]["Config"]
    (theirs.get("Labels") or {}).pop("io.buildah.version", None)
    from corral.storage import Store

    store = Store.open(root)
    ours = json.loads(store.content.read_bytes(store.image(tag).id))["config"]
    assert ours["Env"][-1] == "legacy=value with  spaces alpha"
    for key in CONFIG_KEYS:
        assert (theirs.get(key) or None) == (ours.get(key) or None), key


def test_dockerignore_matches_podman_build(env):
    """The same .dockerignore leaves the same files in `COPY . /ctx/` as podman build."""
    podman, root, ctx = env
    tag = "localhost/corral-test-ignore:latest"
    work = ctx.parent / "ignore"
    files = ["a.log", "keep.log", "sub/a.log", "build/out", "build/keep", "x/tmp/t", "tmp/t2",
             "docs/x.md", "docs/README.md", "docs/deeper/y.md", "sub/one/two/deep", "sub/deep",
             "src/main.c", ".hidden", "notes.txt~", "Dockerfile.dockerignore.txt"]
    for name in files:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n")
    (work / ".dockerignore").write_text(
        "# comment\n*.log\n!keep.log\nbuild/\n!build/keep\n**/tmp\n/docs/*.md\n"
        "!docs/README.md\nsub/**/deep\n*~\n  .hidden  \n")
    (work / "Dockerfile").write_text(f"FROM {BASE}\nCOPY . /ctx/\n")
    _corral(root, "build", "-t", tag, str(work))
    podman("build", "-t", tag, str(work), check=True, timeout=300)
    ours = {k: v for k, v in _tree(_export_corral(root, tag)).items() if k.startswith("ctx/")}
    theirs = {k: v for k, v in _tree(_export_podman(podman, tag)).items()
              if k.startswith("ctx/")}
    assert "ctx/keep.log" in ours and "ctx/a.log" not in ours  # the rules did something
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs  # modes, owners, contents too


def test_copy_semantics_match_podman_build(env):
    """Destinations (file, new dir, existing dir, trailing /), directory contents,
    globs, several sources, --chmod, --chown=uid:gid, relative to WORKDIR: the same tree
    as podman build's."""
    podman, root, ctx = env
    tag = "localhost/corral-test-copies:latest"
    work = ctx.parent / "copies"
    for name in ("one.txt", "two.txt", "three.md", "dir/a", "dir/sub/b", "dir/sub/.dot"):
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n")
    os.chmod(work / "dir" / "sub", 0o750)
    os.chmod(work / "one.txt", 0o600)
    (work / "dir" / "link").symlink_to("sub/b")
    (work / "Dockerfile").write_text(f"""\
FROM {BASE}
COPY one.txt /c/renamed
COPY one.txt /c/newdir/
COPY one.txt /tmp
COPY dir /c/dircontents
COPY dir/ /c/dircontents2/
COPY *.txt /c/globbed/
COPY one.txt three.md /c/several/
COPY --chmod=0640 two.txt /c/chmod
COPY --chown=7:8 dir /c/chowned
COPY --chown=sync one.txt /c/by-name
COPY --chown=42 one.txt /c/by-uid
COPY --chown=sync:mail one.txt /c/by-names
WORKDIR /c/wd
COPY two.txt rel
COPY dir/sub ./subcopy
""")
    _corral(root, "build", "-t", tag, str(work))
    podman("build", "-t", tag, str(work), check=True, timeout=300)
    ours = {k: v for k, v in _tree(_export_corral(root, tag)).items()
            if k.startswith(("c/", "tmp/")) or k in ("c", "tmp")}
    theirs = {k: v for k, v in _tree(_export_podman(podman, tag)).items()
              if k.startswith(("c/", "tmp/")) or k in ("c", "tmp")}
    assert "c/dircontents/sub/b" in ours and "tmp/one.txt" in ours
    assert {k: v for k, v in ours.items() if theirs.get(k) != v} == \
        {k: v for k, v in theirs.items() if ours.get(k) != v} == {}
