"""Transports without a store (no root): references, archives round trips, --change, bad input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from corral.image import transports
from corral.image.transports import TransportError, UnknownFormat
from corral.image.transports.tarball import InvalidChange, TarballReference, apply_changes
from corral.image.transports.types import ArchiveNotFound, ImageNotInArchive
from corral.oci import digest as digests
from corral.oci.reference import InvalidReference


def _rootfs_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def rootfs_tar(tmp_path):
    return _rootfs_tar(tmp_path / "rootfs.tar", {"etc/hostname": b"corral\n",
                                                 "bin/tool": b"#!/bin/sh\necho hi\n" * 100})


def test_parse_references():
    ref = transports.parse("docker-archive:/tmp/x.tar:busybox:1.0")
    assert ref.transport == "docker-archive" and str(ref.path) == "/tmp/x.tar"
    assert ref.name == "busybox:1.0"
    ref = transports.parse("oci:/tmp/dir:tag")
    assert ref.transport == "oci" and ref.ref == "tag"
    ref = transports.parse("oci-archive:/tmp/a.tar")
    assert ref.transport == "oci-archive" and ref.ref is None
    for bad in ("nope:/x", "docker-archive:", "/tmp/x.tar", "containers-storage:busybox"):
        with pytest.raises(TransportError):
            transports.parse(bad)
    with pytest.raises(InvalidReference):
        transports.parse("docker-archive:/tmp/x.tar:Bad/NAME")


def test_apply_changes_both_forms():
    config: dict = {}
    apply_changes(config, ['CMD ["sh", "-c", "x"]', "ENTRYPOINT /bin/init --flag",
                           "ENV A=1 B=two", "ENV C three words", "env A=9", "WORKDIR /srv",
                           "USER nobody", "EXPOSE 80 53/udp", "VOLUME /data",
                           "LABEL k=v", "STOPSIGNAL SIGINT", "CMD=[\"sh\"]"])
    c = config["config"]
    assert c["Cmd"] == ["sh"]
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/bin/init --flag"]
    assert c["Env"] == ["B=two", "C=three words", "A=9"]
    assert c["WorkingDir"] == "/srv" and c["User"] == "nobody"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/data": {}} and c["Labels"] == {"k": "v"}
    assert c["StopSignal"] == "SIGINT"
    for bad in ("FROM x", "CMD [not json", "ENV =x"):
        with pytest.raises(InvalidChange):
            apply_changes({}, [bad])


def _import_to_layout(rootfs_tar: Path, layout: Path, ref: str = "v1") -> str:
    source = TarballReference(str(rootfs_tar), ['CMD ["/bin/tool"]'])
    copied = transports.copy(source, transports.parse(f"oci:{layout}:{ref}"))
    return copied[0].id


def test_layout_round_trip_through_every_format(tmp_path, rootfs_tar):
    image_id = _import_to_layout(rootfs_tar, tmp_path / "layout")
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert json.loads((tmp_path / "layout" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"}
    # every blob is stored under its digest
    for blob in (tmp_path / "layout" / "blobs" / "sha256").iterdir():
        assert digests.of_bytes(blob.read_bytes()) == "sha256:" + blob.name

    da = tmp_path / "image.tar"
    transports.copy(transports.parse(f"oci:{tmp_path / 'layout'}:v1"),
                    transports.parse(f"docker-archive:{da}:example.com/x/y:2"))
    assert transports.detect(str(da)).transport == "docker-archive"
    with tarfile.open(da) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest[0]["RepoTags"] == ["example.com/x/y:2"]
    assert manifest[0]["Config"] == image_id.split(":")[1] + ".json"

    oa = tmp_path / "image-oci.tar"
    transports.copy(transports.detect(str(da)), transports.parse(f"oci-archive:{oa}"))
    assert transports.detect(str(oa)).transport == "oci-archive"

    back = tmp_path / "back"
    copied = transports.copy(transports.detect(str(oa)), transports.parse(f"oci:{back}"))
    assert copied[0].id == image_id  # the config (image id) survives every hop
    assert copied[0].names == ("example.com/x/y:2",)


def test_docker_archive_source_selects_by_name(tmp_path, rootfs_tar):
    _import_to_layout(rootfs_tar, tmp_path / "layout")
    da = tmp_path / "image.tar"
    transports.copy(transports.parse(f"oci:{tmp_path / 'layout'}:v1"),
                    transports.parse(f"docker-archive:{da}:busybox"))
    src = transports.parse(f"docker-archive:{da}:busybox:latest").open_source()
    try:
        assert src.images()[0].names == ("docker.io/library/busybox:latest",)
    finally:
        src.close()
    src = transports.parse(f"docker-archive:{da}:other").open_source()
    try:
        with pytest.raises(ImageNotInArchive):
            src.images()
    finally:
        src.close()


def test_gzip_compressed_archive_loads(tmp_path, rootfs_tar):
    import gzip

    _import_to_layout(rootfs_tar, tmp_path / "layout")
    da = tmp_path / "image.tar"
    transports.copy(transports.parse(f"oci:{tmp_path / 'layout'}:v1"),
                    transports.parse(f"docker-archive:{da}"))
    gz = tmp_path / "image.tar.gz"
    gz.write_bytes(gzip.compress(da.read_bytes()))
    assert transports.detect(str(gz)).transport == "docker-archive"
    copied = transports.copy(transports.detect(str(gz)), transports.parse(f"oci:{tmp_path / 'o'}"))
    assert len(copied) == 1


def test_bad_inputs(tmp_path):
    (tmp_path / "text").write_text("hello\n" * 100)
    with pytest.raises(UnknownFormat, match="not a docker-archive or oci-archive"):
        transports.detect(str(tmp_path / "text"))
    plain = _rootfs_tar(tmp_path / "plain.tar", {"a": b"x"})
    with pytest.raises(UnknownFormat, match="no manifest.json"):
        transports.detect(str(plain))
    with pytest.raises(ArchiveNotFound):
        transports.detect(str(tmp_path / "missing.tar"))
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(UnknownFormat):
        transports.detect(str(tmp_path / "emptydir"))


def test_hostile_manifest_paths_are_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = json.dumps([{"Config": "../../etc/passwd", "RepoTags": [],
                            "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(TransportError, match="leaves the archive"):
        transports.copy(transports.detect(str(evil)), transports.parse(f"oci:{tmp_path / 'o'}"))
    assert not (tmp_path / "o").exists()  # nothing written


def test_failed_copy_leaves_no_destination(tmp_path, rootfs_tar):
    _import_to_layout(rootfs_tar, tmp_path / "layout")
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    layer = blobs / manifest["layers"][0]["digest"][7:]
    layer.chmod(0o644)
    layer.write_bytes(layer.read_bytes()[:-1024] + b"x" * 1024)  # corrupt
    out = tmp_path / "out.tar"
    with pytest.raises(digests.DigestMismatch):
        transports.copy(transports.parse(f"oci:{tmp_path / 'layout'}"),
                        transports.parse(f"oci-archive:{out}"))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_import_refuses_non_tar(tmp_path):
    (tmp_path / "x").write_bytes(b"\x01" * 4096)
    with pytest.raises(TransportError, match="not a tar archive"):
        TarballReference(str(tmp_path / "x")).open_source()
    with pytest.raises(ArchiveNotFound):
        TarballReference(str(tmp_path / "missing")).open_source()
