"""`corral build` on real Dockerfiles (busybox and Debian bases made locally, temp store).

One store per module with the busybox image made once; every test builds into it
with its own `corral-test-*` tags, contexts under tmp_path. Containers that check
the result run with `--network none`. What is asserted is observable: the files
and config of the built image, which steps ran (their RUN output, random values
kept across cached builds), what is left in the store after a failure.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")
DEBIAN_TAR = Path(os.environ.get("CORRAL_TEST_DEBIAN_TAR",
                                 "/var/tmp/corral-test-debian/debian.tar"))

pytestmark = pytest.mark.skipif(shutil.which("conmon") is None, reason="needs conmon")


def _tag() -> str:
    return f"corral-test-{uuid.uuid4().hex[:8]}"


class Corral:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = True, timeout: float = 300,
                 input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([CORRAL, "--root", str(self.root), *args], check=False,
                                capture_output=True, text=True, timeout=timeout, input=input,
                                stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} -> {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def build(self, context: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self("build", *args, str(context), check=check)

    def run(self, image: str, *argv: str) -> str:
        return self("run", "--rm", "--network", "none", image, *argv).stdout

    def config(self, image: str) -> dict:
        from corral.storage import Store

        store = Store.open(self.root)
        record = store.image(image)
        return json.loads(store.content.read_bytes(record.id))

    def state(self) -> dict:
        """What a failed build must not leave: containers, mounts, names, layers."""
        from corral.storage import Store

        store = Store.open(self.root)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if str(self.root) in line.split()[4]]
        names = sorted(n for image in store.list_images() for n in image.names)
        return {"containers": [c.id for c in store.list_containers()], "mounts": mounts,
                "names": names}


def _unmount_under(root: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@pytest.fixture(scope="module")
def corral():
    root = Path(tempfile.mkdtemp(prefix="corral-test-build-"))
    c = Corral(root)
    try:
        c("image", "busybox")
        yield c
    finally:
        subprocess.run([CORRAL, "--root", str(root), "rm", "-af"], check=False,
                       capture_output=True, timeout=120)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def debian(corral):
    """A Debian minbase image: loaded from $CORRAL_TEST_DEBIAN_TAR (a docker-archive,
    default /var/tmp/corral-test-debian/debian.tar), made once with debootstrap if missing."""
    if not DEBIAN_TAR.is_file():
        if not shutil.which("debootstrap") and not os.path.exists("/usr/sbin/debootstrap"):
            pytest.skip("no cached Debian image and debootstrap is not installed")
        DEBIAN_TAR.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="corral-test-debian-"))
        try:
            made = subprocess.run([CORRAL, "--root", str(scratch), "image", "debian",
                                   "corral-test-debian"], check=False, capture_output=True,
                                  text=True, timeout=1800)
            if made.returncode != 0:
                pytest.skip(f"debootstrap failed: {made.stderr.strip()[-300:]}")
            tmp = DEBIAN_TAR.with_suffix(".tmp")
            subprocess.run([CORRAL, "--root", str(scratch), "save", "-o", str(tmp),
                            "corral-test-debian"], check=True, capture_output=True)
            os.replace(tmp, DEBIAN_TAR)
        finally:
            _unmount_under(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
    corral("load", "-q", "-i", str(DEBIAN_TAR))
    image_id = corral("images", "-q", "--no-trunc").stdout.split()
    name = "corral-test-debian-base"
    for candidate in image_id:
        if "debian" in json.dumps(corral.config(candidate).get("history", [])):
            corral("tag", candidate, name)
            return name
    pytest.skip("the Debian archive holds no Debian image")


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str | bytes] | None = None
             ) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return ctx


def _ran(output: str) -> list[str]:
    """The RUN markers (`ran:NAME`) a build printed: the steps that really ran."""
    return [w for line in output.splitlines() if not line.startswith(("STEP ", "--> "))
            for w in line.split() if w.startswith("ran:")]


# -- what a build makes ------------------------------------------------------------------
def test_multistage_args_env_user_workdir(corral, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, """\
ARG BASE=nothing
ARG MSG=default
FROM ${BASE} AS builder
ARG MSG
ENV GREETING="hello ${MSG}" EMPTY=
RUN mkdir -p /out && echo "$GREETING|${EMPTY:-fallback}|${GREETING:+set}" > /out/msg && \\
    echo ran:builder
FROM busybox AS unused
RUN echo ran:unused && exit 1
FROM busybox
ARG MSG
WORKDIR /srv
WORKDIR app
COPY --from=builder /out/msg ./copied
RUN echo "arg=$MSG" > arg.txt && echo ran:final
USER nobody
ENV WHERE=$PWD
CMD ["sh", "-c", "id -un; pwd; cat copied arg.txt"]
""")
    out = corral.build(ctx, "-t", tag, "--build-arg", "BASE=busybox", "--build-arg",
                       "MSG=world", "--target", "2").stdout
    assert _ran(out) == ["ran:builder", "ran:final"]  # the unused stage never ran
    assert corral.run(tag).splitlines() == ["nobody", "/srv/app", "hello world|fallback|set",
                                            "arg=world"]
    config = corral.config(tag)["config"]
    assert config["User"] == "nobody" and config["WorkingDir"] == "/srv/app"
    assert "WHERE=" in config["Env"]  # $PWD is not a build variable
    assert "MSG=world" not in " ".join(config["Env"])  # ARG values are not kept in the image


def test_target_stops_at_the_named_stage(corral, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, "FROM busybox AS first\nRUN echo one > /f && echo ran:first\n"
                             "FROM first AS second\nRUN echo ran:second && exit 7\n")
    out = corral.build(ctx, "-t", tag, "--target", "first").stdout
    assert _ran(out) == ["ran:first"]
    assert corral.run(tag, "cat", "/f") == "one\n"


def test_config_and_history(corral, tmp_path):
    tag, other = _tag(), _tag()
    ctx = _context(tmp_path, """\
FROM busybox
LABEL org.example.a="one two" b=c
EXPOSE 8080 53/udp
VOLUME ["/data"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=30s --timeout=3s CMD true
SHELL ["/bin/sh", "-xc"]
RUN echo layer > /layer
ONBUILD RUN echo triggered
""")
    image_id = corral.build(ctx, "-t", tag, "-t", other, "--label", "extra=1").stdout.split()[-1]
    assert corral("images", "-q", "--no-trunc", tag).stdout.strip().endswith(image_id)
    assert corral("images", "-q", "--no-trunc", other).stdout.strip().endswith(image_id)
    config = corral.config(tag)
    c = config["config"]
    assert c["Labels"] == {"org.example.a": "one two", "b": "c", "extra": "1"}
    assert set(c["ExposedPorts"]) == {"8080/tcp", "53/udp"} and set(c["Volumes"]) == {"/data"}
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["echo hi"]
    assert c["StopSignal"] == "SIGUSR1" and c["Shell"] == ["/bin/sh", "-xc"]
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert c["Healthcheck"]["Interval"] == 30_000_000_000
    assert c["OnBuild"] == ["RUN echo triggered"]
    history = config["history"]
    layered = [h for h in history if not h.get("empty_layer")]
    assert len(layered) == len(config["rootfs"]["diff_ids"])  # image-spec: one per layer
    from corral.oci import digest
    from corral.oci.image import ImageConfig, Manifest, parse_manifest
    from corral.storage import Store

    ImageConfig(config)  # validates every field
    store = Store.open(corral.root)
    manifest = parse_manifest(store.content.read_bytes(store.image(tag).manifest_digest))
    assert isinstance(manifest, Manifest) and manifest.config.digest == store.image(tag).id
    assert [digest.of_bytes(store.content.read_bytes(layer.digest)) for layer in
            manifest.layers] == config["rootfs"]["diff_ids"]  # uncompressed: digest = diff id
    assert [h["created_by"].split()[0] for h in history[-10:]] == [
        "LABEL", "EXPOSE", "VOLUME", "ENTRYPOINT", "CMD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
        "RUN", "ONBUILD"]
    assert history[-2]["created_by"] == "RUN /bin/sh -xc echo layer > /layer"
    assert all(h.get("empty_layer") for i, h in enumerate(history[-10:]) if i != 8)
    assert history[-2].get("empty_layer") is None  # the RUN made a layer
    assert corral.run(tag) == "hi\n"
    # ONBUILD triggers run in a build FROM this image, and are not inherited further
    child = _context(tmp_path / "child", f"FROM {tag}\nRUN test -f /layer\n")
    out = corral.build(child, "-t", _tag()).stdout
    assert "ONBUILD RUN echo triggered" in out and "+ echo triggered" in out


def test_copy_add_chown_chmod_heredocs(corral, tmp_path):
    tag = _tag()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"from the tar\n"
        info = tarfile.TarInfo("pkg/inner.txt")
        info.size, info.mode = len(data), 0o640
        tar.addfile(info, io.BytesIO(data))
    ctx = _context(tmp_path, """\
FROM busybox
ARG WHO=builder
COPY --chown=nobody:nogroup --chmod=600 secret.txt /etc/app/
COPY src/ /opt/src
COPY *.md /docs/
ADD pkg.tar.gz /opt/
COPY <<EOF /etc/app/conf
who=${WHO}
EOF
COPY <<"EOF" /etc/app/raw
who=${WHO}
EOF
RUN <<EOT
set -e
echo "script ran" > /etc/app/script
EOT
RUN <<EOT
#!/bin/sh
echo "shebang $0" > /etc/app/shebang
EOT
""", {"secret.txt": "s3cret\n", "src/a/b.txt": "b\n", "src/top.txt": "t\n", "one.md": "1",
      "two.md": "2", "pkg.tar.gz": archive.getvalue()})
    os.chmod(ctx / "src" / "top.txt", 0o751)
    corral.build(ctx, "-t", tag)
    out = corral.run(tag, "sh", "-c",
                     "stat -c '%U:%G %a' /etc/app/secret.txt /opt/src/top.txt; "
                     "cat /opt/src/a/b.txt /opt/inner.txt /opt/pkg/inner.txt 2>&1; "
                     "ls /docs; cat /etc/app/conf /etc/app/raw /etc/app/script; "
                     "cut -c1-7 /etc/app/shebang")
    lines = out.splitlines()
    assert lines[0] == "nobody:nogroup 600" and lines[1] == "root:root 751"
    assert lines[2] == "b" and "No such file" in lines[3] and lines[4] == "from the tar"
    assert lines[5:7] == ["one.md", "two.md"]
    assert lines[7:11] == ["who=builder", "who=${WHO}", "script ran", "shebang"]


# -- the cache -----------------------------------------------------------------------------
def test_cache_hits_and_misses(corral, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, """\
FROM busybox
RUN cat /proc/sys/kernel/random/uuid > /one && echo ran:one
COPY a.txt /a.txt
RUN cat /proc/sys/kernel/random/uuid > /two && echo ran:two
COPY b.txt /b.txt
RUN echo ran:three
ENV X=1
""", {"a.txt": "a\n", "b.txt": "b\n"})
    first = corral.build(ctx, "-t", tag)
    assert _ran(first.stdout) == ["ran:one", "ran:two", "ran:three"]
    image = first.stdout.split()[-1]
    values = corral.run(tag, "cat", "/one", "/two")
    listed, listed_all = corral("images", "-q").stdout.split(), corral("images", "-aq").stdout
    assert image[:12] in listed and len(listed_all.split()) >= len(listed) + 5  # the cache

    warm = corral.build(ctx, "-t", tag)
    assert _ran(warm.stdout) == [] and warm.stdout.count("Using cache") == 5
    assert warm.stdout.split()[-1] == image  # the same image, only tagged again
    assert corral.run(tag, "cat", "/one", "/two") == values

    (ctx / "b.txt").write_text("changed\n")  # only the steps from COPY b.txt on rerun
    changed = corral.build(ctx, "-t", tag)
    assert _ran(changed.stdout) == ["ran:three"]
    assert corral.run(tag, "cat", "/one", "/two", "/b.txt") == values + "changed\n"

    os.utime(ctx / "a.txt", (1, 1))  # a new mtime with the same content: still cached
    assert _ran(corral.build(ctx, "-t", tag).stdout) == []

    (ctx / "a.txt").write_text("A\n")
    rerun = corral.build(ctx, "-t", tag)
    assert _ran(rerun.stdout) == ["ran:two", "ran:three"]
    assert corral.run(tag, "cat", "/one").strip() == values.split()[0]

    nocache = corral.build(ctx, "-t", tag, "--no-cache")
    assert _ran(nocache.stdout) == ["ran:one", "ran:two", "ran:three"]
    fresh = corral.run(tag, "cat", "/one", "/two")
    assert fresh != values
    after = corral.build(ctx, "-t", tag)  # the cache now gives the --no-cache results
    assert _ran(after.stdout) == [] and after.stdout.split()[-1] == nocache.stdout.split()[-1]
    assert corral.run(tag, "cat", "/one", "/two") == fresh


def test_build_arg_change_misses_the_cache(corral, tmp_path):
    ctx = _context(tmp_path, "FROM busybox\nARG V=1\nRUN echo ran:$V\n")
    assert _ran(corral.build(ctx, "-t", _tag()).stdout) == ["ran:1"]
    assert _ran(corral.build(ctx, "-t", _tag()).stdout) == []
    assert _ran(corral.build(ctx, "-t", _tag(), "--build-arg", "V=2").stdout) == ["ran:2"]


# -- the context -----------------------------------------------------------------------------
def test_dockerignore_is_respected(corral, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, "FROM busybox\nCOPY . /ctx/\n",
                   {".dockerignore": "*.secret\nbuild/\n!build/keep\n", "a.txt": "a",
                    "x.secret": "no", "build/out": "no", "build/keep": "yes",
                    "sub/y.secret": "nested: kept (the pattern has no **)"})
    corral.build(ctx, "-t", tag)
    listing = corral.run(tag, "find", "/ctx", "-type", "f").split()
    assert sorted(listing) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/a.txt",
                               "/ctx/build/keep", "/ctx/sub/y.secret"]
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY x.secret /\n")
    failed = corral.build(ctx, "-t", _tag(), check=False)
    assert failed.returncode == 125 and "x.secret" in failed.stderr
    assert "excluded by .dockerignore" in failed.stderr


@pytest.mark.parametrize("source", ["../outside", "link-out", "abs-link"])
def test_copy_outside_the_context_is_refused(corral, tmp_path, source):
    ctx = _context(tmp_path, f"FROM busybox\nRUN true\nCOPY {source} /x\n")
    (tmp_path / "outside").write_text("host secret")
    os.symlink("../outside", ctx / "link-out")
    os.symlink("/etc/shadow", ctx / "abs-link")
    before = corral.state()
    result = corral.build(ctx, "-t", _tag(), check=False)
    assert result.returncode == 125
    assert "Dockerfile:3: COPY" in result.stderr and "outside the build context" in result.stderr
    assert corral.state() == before


# -- errors ---------------------------------------------------------------------------------
def test_parse_error_names_the_line(corral, tmp_path):
    before = corral.state()
    ctx = _context(tmp_path, "FROM busybox\nRUN echo ok\n\nCOPY --bogus=1 a b\n")
    result = corral.build(ctx, "-t", _tag(), check=False)
    assert result.returncode == 125
    assert result.stderr.strip().endswith("Dockerfile:4: COPY: unknown flag: --bogus")
    assert "STEP" not in result.stdout  # nothing ran
    ctx2 = _context(tmp_path / "two", "FROM busybox\nFOO bar\n")
    result = corral.build(ctx2, check=False)
    assert "Dockerfile:2: unknown instruction: FOO" in result.stderr
    assert corral.state() == before


def test_failing_step_leaves_nothing_half_made(corral, tmp_path):
    tag = _tag()
    before = corral.state()
    ctx = _context(tmp_path, "FROM busybox\nRUN echo fine > /f\n"
                             "RUN echo doing work; echo broken >&2; touch /half; exit 3\n"
                             "RUN echo never\n")
    result = corral.build(ctx, "-t", tag, check=False)
    assert result.returncode == 1  # a failed RUN: 1, like podman build (other errors: 125)
    assert "doing work" in result.stdout and "broken" in result.stdout  # its output is shown
    assert "line 3" in result.stderr and "exit code 3" in result.stderr
    assert "never" not in result.stdout
    assert corral.state() == before  # no container, no mount, no tag
    assert corral("images", "-q", tag, check=False).stdout.strip() == ""
    from corral.storage import Store

    store = Store.open(corral.root)
    used = {layer.id for image in store.list_images()
            for layer in store.layers.chain(image.top_layer)}
    assert {layer.id for layer in store.layers.all()} <= used  # no layer of the failed step
    # quiet: the output comes with the error
    quiet = corral.build(ctx, "-q", "-t", tag, check=False)
    assert quiet.returncode == 1 and "broken" in quiet.stderr


# -- Debian ------------------------------------------------------------------------------------
def test_debian_user_workdir_and_bash_heredoc(corral, debian, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, f"""\
FROM {debian}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN useradd -m -u 1234 app && echo ran:useradd
WORKDIR /home/app/work
COPY --chown=app:app hello.txt ./
RUN chown app: . && echo ran:chown
USER app
RUN <<'EOT' bash
set -euo pipefail
echo "whoami=$(whoami) pwd=$PWD" > out.txt
[[ -O hello.txt ]] && echo owned >> out.txt
EOT
CMD ["cat", "out.txt"]
""", {"hello.txt": "hi\n"})
    out = corral.build(ctx, "-t", tag).stdout
    assert _ran(out) == ["ran:useradd", "ran:chown"]
    assert corral.run(tag) == "whoami=app pwd=/home/app/work\nowned\n"
    assert corral.run(tag, "id", "-u").strip() == "1234"
    # WORKDIR made the directory (root's); COPY --chown owns only what it copies
    assert corral.run(tag, "stat", "-c", "%U", "/home/app/work/hello.txt").strip() == "app"


def test_network_platform_args_and_proxy(corral, tmp_path):
    from corral.image.transports.tarball import host_arch

    tag, host = _tag(), _tag()
    ctx = _context(tmp_path, "FROM busybox\nARG TARGETARCH\n"
                             "RUN echo arch=$TARGETARCH proxy=$HTTP_PROXY > /info && "
                             "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /ifaces\n")
    corral.build(ctx, "-t", tag, "--network", "none",
                 "--build-arg", "HTTP_PROXY=http://proxy.example:3128")
    assert corral.run(tag, "cat", "/info", "/ifaces").split() == [
        f"arch={host_arch()}", "proxy=http://proxy.example:3128", "lo"]
    config = corral.config(tag)
    assert "proxy.example" not in json.dumps(config)  # proxies are not kept in the image
    corral.build(ctx, "-t", host)  # default: the host's network
    assert len(corral.run(host, "cat", "/ifaces").split()) > 1


def test_dockerfile_from_stdin_or_elsewhere_and_errors_name_the_line(corral, tmp_path):
    ctx = _context(tmp_path, "FROM busybox\nRUN exit 9\n", {"a": "a", "b": "b"})
    other = tmp_path / "elsewhere.Dockerfile"
    other.write_text("FROM busybox\nCOPY a /from-file\n")
    tag, stdin_tag = _tag(), _tag()
    corral("build", "-t", tag, "-f", str(other), str(ctx))
    assert corral.run(tag, "cat", "/from-file") == "a"
    result = corral("build", "-t", stdin_tag, "-f", "-", str(ctx),
                    input="FROM busybox\nCOPY b /from-stdin\n")
    assert result.returncode == 0 and corral.run(stdin_tag, "cat", "/from-stdin") == "b"
    for text, message in (
            ("FROM busybox\nUSER nobody\nRUN true\nUSER ghost\nRUN true\n",
             "Dockerfile:5: RUN: user 'ghost' not found"),
            ("FROM busybox\nCOPY a b /dest\n",
             ("Dockerfile:2: COPY: with more than one source the destination must be a "
             "directory and end with a /: /dest")),
            ("FROM busybox\nCOPY --chown=nosuch a /a\n", "Dockerfile:2: COPY: --chown=nosuch"),
            ("FROM busybox\nENV X=${Y\n", "Dockerfile:2: ENV: missing '}'"),
            ("FROM corral-test-no-such-image\n", "Dockerfile:1: FROM: image"),
    ):
        before = corral.state()
        failed = corral("build", "-f", "-", str(ctx), input=text, check=False)
        assert failed.returncode == 125 and message in failed.stderr, failed.stderr
        assert corral.state() == before
    assert corral.state()["containers"] == [] and corral.state()["mounts"] == []
    bad_tag = corral("build", "-t", "UPPER/case", "-f", "-", str(ctx),
                     input="FROM busybox\nRUN echo ran:never\n", check=False)
    assert bad_tag.returncode == 125 and "must be lowercase" in bad_tag.stderr
    assert "STEP" not in bad_tag.stdout  # refused before any step


def test_add_url(corral, tmp_path):
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    (served / "tool.sh").write_text("echo tool v1\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tool.sh"
        ctx = _context(tmp_path, f"FROM busybox\nADD {url} /opt/\nADD {url} /renamed.sh\n"
                                 "RUN echo ran:after\n")
        tag = _tag()
        out = corral.build(ctx, "-t", tag).stdout
        assert _ran(out) == ["ran:after"]
        listing = corral.run(tag, "sh", "-c", "stat -c '%a %n' /opt/tool.sh /renamed.sh; "
                                              "sh /opt/tool.sh")
        assert listing.splitlines() == ["600 /opt/tool.sh", "600 /renamed.sh", "tool v1"]
        assert _ran(corral.build(ctx, "-t", tag).stdout) == []  # same content: cached
        (served / "tool.sh").write_text("echo tool v2\n")
        assert _ran(corral.build(ctx, "-t", tag).stdout) == ["ran:after"]
        assert corral.run(tag, "sh", "/renamed.sh") == "tool v2\n"
        ctx2 = _context(tmp_path / "bad", f"FROM busybox\nADD {url}.missing /x\n")
        failed = corral.build(ctx2, check=False)
        assert failed.returncode == 125 and "Dockerfile:2: ADD:" in failed.stderr
        assert "404" in failed.stderr
    finally:
        server.shutdown()


def test_missing_base_is_pulled_and_pull_refreshes(corral, tmp_path):
    from tests.support.registry_server import ServeProcess

    server = ServeProcess(tmp_path / "registry")
    fresh = Corral(tmp_path / "fresh-store")
    try:
        remote = f"{server.addr}/corral-test/base:1"
        corral("push", "busybox", remote)
        ctx = _context(tmp_path, f"FROM {remote}\nRUN echo ran:step > /f\n")
        out = fresh.build(ctx, "-t", "corral-test-pulled").stdout
        assert f"Pulling {remote}" in out and "STEP 2/2" in out
        assert fresh.run("corral-test-pulled", "cat", "/f") == "ran:step\n"
        assert "Pulling" not in fresh.build(ctx, "-t", "corral-test-pulled").stdout
        assert f"Pulling {remote}" in fresh.build(ctx, "--pull").stdout
        server.stop()
        failed = fresh.build(ctx, "--pull", check=False)
        assert failed.returncode == 125
        assert f"Dockerfile:1: FROM: image {remote!r}: pulling it failed" in failed.stderr
    finally:
        server.stop()
        subprocess.run([CORRAL, "--root", str(fresh.root), "rm", "-af"], check=False,
                       capture_output=True, timeout=120)
        _unmount_under(fresh.root)
        shutil.rmtree(fresh.root, ignore_errors=True)


def test_from_scratch(corral, tmp_path):
    tag, empty = _tag(), _tag()
    ctx = _context(tmp_path, 'FROM scratch\nCOPY busybox /bin/busybox\n'
                             'CMD ["/bin/busybox", "echo", "from scratch"]\n',
                   {"busybox": Path("/bin/busybox").read_bytes()})
    os.chmod(ctx / "busybox", 0o755)
    corral.build(ctx, "-t", tag)
    assert corral.run(tag) == "from scratch\n"
    assert len(corral.config(tag)["rootfs"]["diff_ids"]) == 1
    (ctx / "Dockerfile").write_text("FROM scratch\nLABEL only=metadata\n")
    corral.build(ctx, "-t", empty)
    config = corral.config(empty)
    assert config["rootfs"]["diff_ids"] == [] and config["config"]["Labels"] == {"only": "metadata"}
    assert config["config"]["Env"] == [  # a default PATH, as BuildKit and buildah give
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert [h.get("empty_layer") for h in config["history"]] == [True]


def test_workdir_is_created_and_chmod_chown_forms(corral, tmp_path):
    tag, exists = _tag(), _tag()
    ctx = _context(tmp_path, "FROM busybox\nCOPY --chown=daemon --chmod=u=rwX,go=rX d /d\n"
                             "COPY --chmod=+x s.sh /s.sh\nCOPY --chown=sync s.sh /sync\n"
                             "COPY --chown=42 s.sh /42\nWORKDIR /made/by/workdir\n",
                   {"d/f": "f", "d/sub/g": "g", "s.sh": "echo"})
    os.chmod(ctx / "d" / "f", 0o600)
    corral.build(ctx, "-t", tag)
    out = corral.run(tag, "stat", "-c", "%a %u:%g %n", "/d", "/d/f", "/d/sub", "/s.sh",
                     "/sync", "/42", "/made/by/workdir")
    assert out.splitlines() == ["755 1:1 /d", "644 1:1 /d/f", "755 1:1 /d/sub",
                                "755 0:0 /s.sh", "644 4:100 /sync", "644 42:42 /42",
                                "755 0:0 /made/by/workdir"]
    history = corral.config(tag)["history"]
    assert history[-1]["created_by"] == "WORKDIR /made/by/workdir"
    assert not history[-1].get("empty_layer")  # the directory needed a layer
    (ctx / "Dockerfile").write_text("FROM busybox\nWORKDIR /tmp\n")
    corral.build(ctx, "-t", exists)
    config = corral.config(exists)
    assert config["history"][-1].get("empty_layer") and config["config"]["WorkingDir"] == "/tmp"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killed_build_leaves_nothing(corral, tmp_path, sig):
    import signal
    import time

    from corral.storage import Store

    before = corral.state()
    ctx = _context(tmp_path, f"FROM busybox\nRUN echo {sig} && sleep 60\n")
    proc = subprocess.Popen([CORRAL, "--root", str(corral.root), "build", str(ctx)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not Store.open(corral.root).list_containers():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)  # the step is running
        if sig == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:  # corral and the runtime's `run` it started; the container stays
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if sig == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM and corral.state() == before
        return
    # killed outright: the next build removes what the dead one left (runtime delete
    # --force of its step's container, unmount, RW layer)
    assert Store.open(corral.root).list_containers()
    out = corral.build(_context(tmp_path / "next", "FROM busybox\nLABEL next=1\n")).stdout
    assert "of a build that was killed" in out
    assert corral.state() == before


def test_dockerfile_specific_ignore_file_and_iidfile(corral, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, "unused", {".dockerignore": "a\n", "a": "a", "b": "b"})
    dockerfile = ctx / "app.Dockerfile"
    dockerfile.write_text("FROM busybox\nCOPY . /ctx/\n")
    (ctx / "app.Dockerfile.dockerignore").write_text("b\n*.dockerignore\n")
    iid = tmp_path / "iid"
    out = corral("build", "-t", tag, "-f", str(dockerfile), "--iidfile", str(iid), str(ctx))
    assert iid.read_text() == "sha256:" + out.stdout.split()[-1]
    assert sorted(corral.run(tag, "ls", "-A", "/ctx").split()) == ["Dockerfile", "a",
                                                                  "app.Dockerfile"]


def test_copy_into_merged_usr_keeps_the_links(corral, debian, tmp_path):
    import io as io_

    tag = _tag()
    archive = io_.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name in ("lib/", "lib/from-tar.so"):
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info, io_.BytesIO(b"") if not name.endswith("/") else None)
    ctx = _context(tmp_path, f"FROM {debian}\nCOPY root/ /\nADD lib.tar /\n",
                   {"root/bin/mytool": "#!/bin/sh\necho mytool\n", "lib.tar": archive.getvalue()})
    os.chmod(ctx / "root" / "bin" / "mytool", 0o755)
    corral.build(ctx, "-t", tag)
    out = corral.run(tag, "sh", "-c", "readlink /bin /lib; mytool; ls /usr/lib/from-tar.so")
    assert out.splitlines() == ["usr/bin", "usr/lib", "mytool", "/usr/lib/from-tar.so"]


def test_run_mounts(corral, tmp_path):
    tag, cache_id = _tag(), _tag()
    ctx = _context(tmp_path, f"""\
FROM busybox AS tools
RUN mkdir /t && echo from-stage > /t/x
FROM busybox
RUN --mount=type=cache,target=/cache,id={cache_id} \\
    echo run >> /cache/count && wc -l < /cache/count > /count-seen
RUN --mount=target=/ctx cat /ctx/data.txt > /copied && ls -A /ctx > /ctx-list && echo ran:bind
RUN --mount=type=bind,from=tools,source=/t,target=/t cat /t/x > /from-stage
RUN --mount=type=tmpfs,target=/scratch touch /scratch/a && ls /scratch > /tmpfs-list
RUN --mount=target=/ctx,rw touch /ctx/written && ls /ctx/written > /rw-seen
""", {"data.txt": "data\n", ".dockerignore": "secret\n", "secret": "s"})
    corral.build(ctx, "-t", tag)
    out = corral.run(tag, "sh", "-c", "cat /count-seen /copied /ctx-list /from-stage "
                                      "/tmpfs-list /rw-seen; "
                                      "ls -d /cache /ctx /t /scratch 2>&1; true")
    lines = out.splitlines()
    assert lines[:8] == ["1", "data", ".dockerignore", "Dockerfile", "data.txt", "from-stage",
                         "a", "/ctx/written"]
    assert len(lines) == 12 and all("No such file" in line for line in lines[8:])  # no mount points
    assert not (ctx / "written").exists()  # rw writes went to a throw-away copy
    assert corral.run(tag, "cat", "/count-seen") == "1\n"
    corral.build(ctx, "-t", tag, "--no-cache")  # the cache mount kept its content
    assert corral.run(tag, "cat", "/count-seen") == "2\n"
    assert _ran(corral.build(ctx, "-t", tag).stdout) == []
    (ctx / "data.txt").write_text("changed\n")  # what a bind mount shows is in the key
    assert _ran(corral.build(ctx, "-t", tag).stdout) == ["ran:bind"]
    bad = _context(tmp_path / "bad", "FROM busybox\nRUN --mount=type=ssh true\n")
    failed = corral.build(bad, check=False)
    assert "Dockerfile:2: RUN: --mount type=ssh is not supported" in failed.stderr


@pytest.mark.skipif(shutil.which("runc") is None and not os.path.exists("/usr/sbin/runc"),
                    reason="runc is not installed (the reference runtime)")
def test_runc_runs_the_steps_too(corral, tmp_path):
    runc = shutil.which("runc") or "/usr/sbin/runc"
    tag = _tag()
    ctx = _context(tmp_path, "FROM busybox\nUSER nobody\nWORKDIR /tmp/w\n"
                             "RUN --mount=type=tmpfs,target=/m id -un > /tmp/w/who; "
                             "echo ran:runc\n")
    out = corral("--runtime", runc, "build", "-t", tag, str(ctx)).stdout
    assert _ran(out) == ["ran:runc"]
    assert corral.run(tag, "cat", "/tmp/w/who") == "nobody\n"
    assert not (corral.root / "runtime-runc").exists() or \
        not any((corral.root / "runtime-runc").iterdir())  # runc's container was deleted


def test_secrets_are_mounted_never_stored(corral, tmp_path):
    tag = _tag()
    secret = tmp_path / "token"
    secret.write_text(f"s3cr3t-value-{tag}")
    ctx = _context(tmp_path, "FROM busybox\n"
                             "RUN --mount=type=secret,id=tok,required "
                             "echo \"len=$(wc -c < /run/secrets/tok)\" > /seen && "
                             "stat -c %a /run/secrets/tok >> /seen\n"
                             "RUN --mount=type=secret,id=absent,target=/opt/s "
                             "test ! -e /opt/s && echo optional-ok >> /seen\n")
    corral("build", "-t", tag, "--secret", f"id=tok,src={secret}", str(ctx))
    size = len(secret.read_text())
    out = corral.run(tag, "sh", "-c", "cat /seen; ls -A /run /opt 2>&1; true")
    assert out.splitlines()[:3] == [f"len={size}", "400", "optional-ok"]
    assert "secrets" not in out and "ls: /opt" in out  # no mount point was kept
    content = corral.root / "content" / "blobs" / "sha256"
    assert not any(secret.read_bytes() in blob.read_bytes() for blob in content.iterdir())
    failed = corral.build(ctx, check=False)  # `required` without --secret
    assert failed.returncode == 125 and "Dockerfile:2: RUN: --mount type=secret: secret " \
        "'tok' is required" in failed.stderr


def test_run_steps_are_confined(corral, tmp_path):
    """RUN gets podman's default capabilities and seccomp filter, not the host's."""
    tag = _tag()
    ctx = _context(tmp_path, "FROM busybox\nRUN grep -E '^(Seccomp|CapBnd):' /proc/self/status "
                             "> /status\n")
    corral.build(ctx, "-t", tag)
    status = dict(line.split(":\t") for line in corral.run(tag, "cat", "/status").splitlines())
    assert status["Seccomp"] == "2"  # a filter
    assert int(status["CapBnd"], 16) & (1 << 21) == 0  # no CAP_SYS_ADMIN


def test_vfs_driver(tmp_path):
    """The same build on the vfs driver (RW layers are copies; diffs compare trees)."""
    root = Path(tempfile.mkdtemp(prefix="corral-test-build-vfs-"))
    vfs = Corral(root)
    try:
        vfs("--storage-driver", "vfs", "image", "busybox")
        ctx = _context(tmp_path, "FROM busybox\nRUN rm /bin/vi && echo x > /x && echo ran:vfs\n"
                                 "COPY f /f\nWORKDIR /w\n", {"f": "hi\n"})
        out = vfs("--storage-driver", "vfs", "build", "-t", "corral-test-vfs", str(ctx)).stdout
        assert _ran(out) == ["ran:vfs"]
        listing = vfs("run", "--rm", "--network", "none", "corral-test-vfs", "sh", "-c",
                      "test -e /bin/vi || echo no-vi; cat /x /f; pwd").stdout
        assert listing.split() == ["no-vi", "x", "hi", "/w"]
        again = vfs("--storage-driver", "vfs", "build", "-t", "corral-test-vfs", str(ctx))
        assert _ran(again.stdout) == [] and again.stdout.count("Using cache") == 3
    finally:
        subprocess.run([CORRAL, "--root", str(root), "rm", "-af"], check=False,
                       capture_output=True, timeout=120)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def test_a_run_that_changes_nothing_adds_no_layer(corral, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, "FROM busybox\nRUN true\nRUN echo x > /x\nRUN test -f /x\n")
    corral.build(ctx, "-t", tag)
    config = corral.config(tag)
    base = corral.config("busybox")
    assert len(config["rootfs"]["diff_ids"]) == len(base["rootfs"]["diff_ids"]) + 1
    assert [h.get("empty_layer", False) for h in config["history"][-3:]] == [True, False, True]
    assert _ran(corral.build(ctx, "-t", tag).stdout) == [] and \
        corral.build(ctx, "-t", tag).stdout.count("Using cache") == 3


def test_onbuild_trigger_uses_a_stage_of_the_downstream_build(corral, tmp_path):
    base, tag = _tag(), _tag()
    corral.build(_context(tmp_path / "base", "FROM busybox\nONBUILD COPY --from=helper /h /h\n"
                                             "ONBUILD RUN echo ran:trigger\n"), "-t", base)
    ctx = _context(tmp_path / "app", f"FROM busybox AS helper\nRUN echo helped > /h\n"
                                     f"FROM busybox AS unused\nRUN echo ran:unused\n"
                                     f"FROM {base}\nRUN cat /h\n")
    out = corral.build(ctx, "-t", tag).stdout
    assert _ran(out) == ["ran:trigger"]  # the unused stage did not run; helper did, lazily
    assert corral.run(tag, "cat", "/h") == "helped\n"
    assert "OnBuild" not in corral.config(tag)["config"]  # not inherited by grand-children


def test_copy_exclude_add_unpack_and_checksum(corral, tmp_path):
    import functools
    import hashlib
    import http.server
    import threading

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("inner.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"inner\n"))
    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.tar.gz").write_bytes(archive.getvalue())
    good = "sha256:" + hashlib.sha256(archive.getvalue()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/remote.tar.gz"
    try:
        tag = _tag()
        ctx = _context(tmp_path, f"""\
FROM busybox
COPY --exclude=*.txt --exclude=*.md hom* /mine/
COPY --exclude=*.log --exclude=sub dir /dir/
ADD --unpack=false local.tar.gz /kept/
ADD --checksum={good} {url} /remote/
ADD --unpack=true {url} /unpacked/
""", {"home.txt": "t", "home.md": "m", "home.c": "c", "homer.h": "h", "dir/a.log": "l",
              "dir/b.c": "b", "dir/sub/x": "x", "dir/deep/y.log": "y",
              "local.tar.gz": archive.getvalue()})
        corral.build(ctx, "-t", tag)
        out = corral.run(tag, "sh", "-c", "cd / && find mine dir kept remote unpacked -type f "
                                          "| sort")
        # `*` stays in one directory (filepath.Match): deep/y.log needs **/*.log
        assert out.split() == ["dir/b.c", "dir/deep/y.log", "kept/local.tar.gz", "mine/home.c",
                               "mine/homer.h", "remote/remote.tar.gz", "unpacked/inner.txt"]
        bad = _context(tmp_path / "bad", f"FROM busybox\nADD --checksum=sha256:{'0' * 64} "
                                         f"{url} /x\n")
        failed = corral.build(bad, check=False)
        assert failed.returncode == 125 and "does not match the content" in failed.stderr
        assert "Dockerfile:2: ADD:" in failed.stderr
    finally:
        server.shutdown()


def test_copy_parents(corral, tmp_path):
    tag = _tag()
    ctx = _context(tmp_path, "FROM busybox AS stage\nRUN mkdir -p /opt/app/bin && "
                             "echo tool > /opt/app/bin/tool\n"
                             "FROM busybox\n"
                             "COPY --parents --from=stage /opt/./app/bin/tool /fromstage/\n"
                             "COPY ./x/a.txt ./y/a.txt /no_parents/\n"
                             "COPY --parents ./x/a.txt ./y/a.txt /parents/\n"
                             "COPY --parents ./x/./y/*.txt /pivot/\n"
                             "COPY --parents ./src/**/*.txt /deep/\n",
                   {"x/a.txt": "xa", "y/a.txt": "ya", "x/y/a.txt": "xya", "x/y/b.txt": "xyb",
                    "src/a.txt": "1", "src/x/b.txt": "2", "src/x/y/c.txt": "3", "src/x/n.md": "n"})
    corral.build(ctx, "-t", tag)
    out = corral.run(tag, "sh", "-c", "cd / && find no_parents parents pivot deep fromstage "
                                      "-type f | sort; cat /no_parents/a.txt")
    assert out.split() == ["deep/src/a.txt", "deep/src/x/b.txt", "deep/src/x/y/c.txt",
                           "fromstage/app/bin/tool", "no_parents/a.txt", "parents/x/a.txt", "parents/y/a.txt",
                           "pivot/y/a.txt", "pivot/y/b.txt", "ya"]  # the reference's examples
