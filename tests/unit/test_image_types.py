"""corral.oci.image: descriptors, manifests, indexes, configs, platforms, chain ids.

What corral serializes is checked against the OCI image spec's own JSON schemas
(data/oci-image-schema, copied from the spec) with the `jsonschema` package, and
every JSON example of the spec (data/oci-image-examples) must parse.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

import pytest

from corral.errors import InvalidArgument, NotFound
from corral.oci import digest, image
from corral.oci.image import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER_GZIP,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    InvalidImage,
    Manifest,
    NoMatchingPlatform,
    Platform,
    chain_ids,
    parse_manifest,
    select_platform,
)

DATA = Path(__file__).parent / "data"
SCHEMAS = DATA / "oci-image-schema"
EXAMPLES = sorted((DATA / "oci-image-examples").glob("*.json"))


def d(char: str) -> str:
    return "sha256:" + char * 64


# -- schema validation ---------------------------------------------------------

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the [test] extra) missing")
referencing = pytest.importorskip("referencing", reason="referencing (jsonschema's) missing")


@pytest.fixture(scope="module")
def validators():
    """Draft-4 validators for the spec's schemas.

    The schemas' `id`s move the base URI around (…/schema/descriptor,
    …/schema/image/manifest); relative `$ref`s are resolved by file name.
    """
    from referencing.jsonschema import DRAFT4

    def retrieve(uri: str):
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        return DRAFT4.create_resource(json.loads((SCHEMAS / name).read_text()))

    registry = referencing.Registry(retrieve=retrieve)

    def make(name: str):
        schema = json.loads((SCHEMAS / name).read_text())
        schema["id"] = f"https://opencontainers.org/schema/image/{name}"
        return jsonschema.Draft4Validator(schema, registry=registry)

    return {"manifest": make("image-manifest-schema.json"),
            "index": make("image-index-schema.json"),
            "config": make("config-schema.json"),
            "descriptor": make("content-descriptor.json")}


def _valid(validators, kind: str, data: bytes) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in validators[kind].iter_errors(json.loads(data))]
    assert errors == []


def test_the_schemas_do_reject(validators):
    """The validators are live: a manifest without layers fails."""
    assert list(validators["manifest"].iter_errors({"schemaVersion": 2, "config": {}}))
    assert list(validators["descriptor"].iter_errors({"mediaType": "a/b", "size": -1,
                                                       "digest": d("a")}))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_spec_examples_parse_and_reserialize_valid(validators, path):
    data = path.read_bytes()
    kind = path.name.split("-")[0]
    if kind == "descriptor":
        parsed = Descriptor.from_json(json.loads(data))
        assert parsed.to_json() == json.loads(data)
    elif kind == "config":
        parsed = ImageConfig.from_bytes(data)
        assert parsed.to_json() == json.loads(data)
    else:
        parsed = parse_manifest(data)
        assert isinstance(parsed, Manifest if kind == "manifest" else Index)
        assert parsed.source_digest == digest.of_bytes(data)
        assert not parsed.converted
        assert json.loads(parsed.to_bytes()) == {**json.loads(data), "mediaType":
                                                 parsed.media_type}
    _valid(validators, kind, parsed.to_bytes())


# -- fixtures ------------------------------------------------------------------

CONFIG = {
    "created": "2024-01-02T03:04:05Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "app:app",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
        "Entrypoint": ["/entrypoint.sh"],
        "Cmd": ["serve", "--port", "8080"],
        "Volumes": {"/data": {}},
        "WorkingDir": "/srv",
        "Labels": {"org.opencontainers.image.title": "app"},
        "StopSignal": "SIGQUIT",
    },
    "rootfs": {"type": "layers", "diff_ids": [d("1"), d("2")]},
    "history": [{"created_by": "ADD rootfs.tar /"},
                {"created_by": "ENV LANG=C.UTF-8", "empty_layer": True},
                {"created_by": "COPY app /srv"}],
}

# What `docker save` / a registry hands out for an old image: Docker-only keys,
# null for absent fields.
DOCKER_STYLE_CONFIG = {
    "architecture": "arm64", "variant": "v8", "os": "linux",
    "docker_version": "20.10.7", "container": "3f1a...",
    "container_config": {"Hostname": "3f1a", "Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"sh\"]"]},
    "config": {"Hostname": "", "Env": None, "Cmd": None, "Entrypoint": None,
               "Volumes": None, "Labels": None, "OnBuild": None, "WorkingDir": "",
               "User": "", "ArgsEscaped": True},
    "rootfs": {"type": "layers", "diff_ids": [d("3")]},
}


def docker_manifest() -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": 1469, "digest": d("c")},
        "layers": [
            {"mediaType": DOCKER_LAYER_GZIP, "size": 100, "digest": d("1")},
            {"mediaType": DOCKER_FOREIGN_LAYER_GZIP, "size": 200, "digest": d("2"),
             "urls": ["https://example.com/layer.tar.gz"]},
        ],
    }


def docker_list() -> dict:
    def entry(char, arch, variant=None):
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        return {"mediaType": DOCKER_MANIFEST, "size": 527, "digest": d(char),
                "platform": platform}

    return {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [entry("a", "amd64"), entry("b", "arm", "v6"), entry("c", "arm", "v7"),
                          entry("d", "arm64", "v8"), entry("e", "386"),
                          entry("f", "ppc64le"), entry("9", "s390x")]}


def oci_manifest() -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": 7023, "digest": d("c")},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "size": 32654, "digest": d("1")},
                   {"mediaType": OCI_LAYER_ZSTD, "size": 16724, "digest": d("2")},
                   {"mediaType": OCI_LAYER, "size": 73109, "digest": d("3")}],
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }


def _bytes(obj: dict) -> bytes:
    return json.dumps(obj, indent=3).encode()


# -- Docker schema 2 -> OCI ------------------------------------------------------


def test_docker_manifest_becomes_oci(validators):
    data = _bytes(docker_manifest())
    m = parse_manifest(data)
    assert isinstance(m, Manifest)
    assert m.converted
    assert m.source_media_type == DOCKER_MANIFEST
    assert m.source_digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert m.media_type == OCI_MANIFEST
    assert m.config == Descriptor(OCI_CONFIG, d("c"), 1469)
    assert [layer.media_type for layer in m.layers] == [OCI_LAYER_GZIP,
                                                        OCI_LAYER_NONDISTRIBUTABLE_GZIP]
    assert m.layers[1].urls == ("https://example.com/layer.tar.gz",)
    out = m.to_bytes()
    _valid(validators, "manifest", out)
    assert json.loads(out)["mediaType"] == OCI_MANIFEST
    assert m.descriptor() == Descriptor(OCI_MANIFEST, digest.of_bytes(out), len(out))
    # The converted manifest parses back to itself, now as OCI.
    again = parse_manifest(out)
    assert again == m and not again.converted and again.source_digest == digest.of_bytes(out)


def test_docker_manifest_list_becomes_an_oci_index(validators):
    data = _bytes(docker_list())
    idx = parse_manifest(data)
    assert isinstance(idx, Index) and idx.converted
    assert idx.source_media_type == DOCKER_MANIFEST_LIST
    assert idx.source_digest == digest.of_bytes(data)
    assert {m.media_type for m in idx.manifests} == {OCI_MANIFEST}
    # Digests still name the original (Docker) blobs.
    assert [m.digest for m in idx.manifests][:2] == [d("a"), d("b")]
    _valid(validators, "index", idx.to_bytes())


def test_media_type_hint_is_used_when_the_document_has_none():
    body = docker_manifest()
    del body["mediaType"]
    m = parse_manifest(_bytes(body), DOCKER_MANIFEST)
    assert m.source_media_type == DOCKER_MANIFEST
    assert m.config.media_type == OCI_CONFIG
    body = docker_list()
    del body["mediaType"]
    idx = parse_manifest(_bytes(body), DOCKER_MANIFEST_LIST)
    assert isinstance(idx, Index) and idx.manifests[0].media_type == OCI_MANIFEST


def test_sniffing_without_any_media_type():
    body = oci_manifest()
    del body["mediaType"]
    m = parse_manifest(_bytes(body))
    assert isinstance(m, Manifest) and m.source_media_type == OCI_MANIFEST
    idx = parse_manifest(b'{"schemaVersion": 2, "manifests": []}', "application/json")
    assert isinstance(idx, Index) and idx.manifests == ()


def test_oci_manifest_keeps_its_types():
    m = parse_manifest(_bytes(oci_manifest()), OCI_MANIFEST)
    assert [layer.media_type for layer in m.layers] == [OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER]
    assert m.annotations == {"org.opencontainers.image.ref.name": "v1"}
    assert not m.converted


def test_docker_and_oci_hints_of_the_same_kind_agree():
    m = parse_manifest(_bytes(docker_manifest()), OCI_MANIFEST)
    assert m.source_media_type == DOCKER_MANIFEST


@pytest.mark.parametrize(("data", "hint", "fragment"), [
    (_bytes(docker_manifest()), DOCKER_MANIFEST_LIST, "was expected"),
    (_bytes(docker_list()), OCI_MANIFEST, "was expected"),
    (b'{"schemaVersion": 1, "name": "x", "fsLayers": []}', None, "schema 1"),
    (b'{"schemaVersion": 2}', image.DOCKER_SCHEMA1_SIGNED_MANIFEST, "schema 1"),
    (b'{"schemaVersion": 2}', None, "cannot tell the media type"),
    (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.config.v1+json"}', None,
     "unsupported media type"),
    (b'{"schemaVersion": 2, "mediaType": 5}', None, "manifest.mediaType: expected a string"),
    (b"[]", None, "manifest: expected an object"),
    (b"not json", None, "not valid JSON"),
    (b'\xff\xfe{"a": 1}', None, "not valid JSON"),
    (b'{"schemaVersion": 2, "schemaVersion": 2, "manifests": []}', None,
     "duplicate key 'schemaVersion'"),
])
def test_parse_manifest_refuses(data, hint, fragment):
    with pytest.raises(InvalidImage, match=fragment.replace("(", r"\(")):
        parse_manifest(data, hint)


# -- validation naming the field ----------------------------------------------------


def _broken(mutate) -> dict:
    body = oci_manifest()
    mutate(body)
    return body


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda m: m["layers"][2].update(digest="sha256:../x"),
     "manifest.layers[2].digest: invalid digest 'sha256:../x'"),
    (lambda m: m["layers"][1].update(digest="sha256:" + "A" * 64),
     "manifest.layers[1].digest: invalid digest"),
    (lambda m: m["layers"][0].pop("size"), "manifest.layers[0].size: required"),
    (lambda m: m["layers"][0].update(size=-1), "manifest.layers[0].size: must be a non-negative"),
    (lambda m: m["layers"][0].update(size=True), "manifest.layers[0].size: must be a non-negative"),
    (lambda m: m["layers"][0].update(size=1.5), "manifest.layers[0].size: must be a non-negative"),
    (lambda m: m["layers"][0].update(size=1 << 63),
     "manifest.layers[0].size: must be a non-negative int64"),
    (lambda m: m["layers"][0].update(mediaType="tar"),
     "manifest.layers[0].mediaType: 'tar' is not a media type"),
    (lambda m: m["layers"][0].pop("mediaType"), "manifest.layers[0].mediaType: required"),
    (lambda m: m["layers"][0].update(annotations={"k": 1}),
     "manifest.layers[0].annotations['k']: expected a string"),
    (lambda m: m["layers"][0].update(urls="http://x"),
     "manifest.layers[0].urls: expected an array of strings"),
    (lambda m: m.update(layers={}), "manifest.layers: expected an array"),
    (lambda m: m["layers"].append("x"), "manifest.layers[3]: expected an object, got string"),
    (lambda m: m.pop("config"), "manifest.config: required"),
    (lambda m: m["config"].update(digest=None), "manifest.config.digest: expected a digest"),
    (lambda m: m.update(schemaVersion=1), "schema 1"),
    (lambda m: m.update(schemaVersion=3), "manifest.schemaVersion: must be 2, got 3"),
    (lambda m: m.update(schemaVersion="2"), "manifest.schemaVersion: must be 2"),
    (lambda m: m.pop("schemaVersion"), "manifest.schemaVersion: required"),
    (lambda m: m.update(annotations=[]), "manifest.annotations: expected an object"),
    (lambda m: m.update(subject={"mediaType": OCI_MANIFEST, "size": 1}),
     "manifest.subject.digest: required"),
    (lambda m: m.update(artifactType="nope"), "manifest.artifactType: 'nope' is not a media type"),
])
def test_manifest_errors_name_the_field(mutate, message):
    with pytest.raises(InvalidArgument) as info:
        parse_manifest(_bytes(_broken(mutate)))
    assert message in str(info.value)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda i: i["manifests"][1]["platform"].pop("architecture"),
     "index.manifests[1].platform.architecture: required"),
    (lambda i: i["manifests"][0]["platform"].update(os=7),
     "index.manifests[0].platform.os: expected a string, got integer"),
    (lambda i: i["manifests"][0]["platform"].update(variant=["v7"]),
     "index.manifests[0].platform.variant: expected a string, got array"),
    (lambda i: i["manifests"][0]["platform"].update({"os.features": "x"}),
     "index.manifests[0].platform['os.features']: expected an array"),
    (lambda i: i["manifests"][2].update(digest="sha512:abc"),
     "index.manifests[2].digest: invalid digest 'sha512:abc'"),
    (lambda i: i.pop("manifests"), "index.manifests: required"),
    (lambda i: i.update(manifests=None), "index.manifests: expected an array, got null"),
])
def test_index_errors_name_the_field(mutate, message):
    body = docker_list()
    mutate(body)
    with pytest.raises(InvalidArgument) as info:
        parse_manifest(_bytes(body))
    assert message in str(info.value)


def test_embedded_data_is_verified():
    content = b"{}"
    good = {"mediaType": image.OCI_EMPTY, "digest": digest.of_bytes(content), "size": 2,
            "data": base64.b64encode(content).decode()}
    assert Descriptor.from_json(good).data == "e30="
    for change, message in [({"data": "W10="}, "descriptor.data: embedded content has digest"),
                            ({"data": "e30"}, "descriptor.data: not valid base64"),
                            ({"data": "e30=", "size": 3}, "embedded content is 2 bytes")]:
        with pytest.raises(InvalidImage, match=message):
            Descriptor.from_json({**good, **change})


# -- values and serialization -----------------------------------------------------


def test_descriptor_round_trip_and_immutability():
    desc = Descriptor(OCI_MANIFEST, d("a"), 7, annotations={"a": "b"},
                      platform=Platform("linux", "arm64", "v8"), urls=["https://x/y"],
                      artifact_type="application/vnd.example+type")
    again = Descriptor.from_json(json.loads(desc.to_bytes()))
    assert again == desc
    assert desc.replace(size=8).size == 8 and desc.size == 7
    with pytest.raises(AttributeError):
        desc.size = 9  # type: ignore[misc]
    assert "digest='sha256:aaaa" in repr(desc)
    with pytest.raises(InvalidArgument):
        Descriptor(OCI_MANIFEST, "sha256:../x", 1)
    with pytest.raises(InvalidImage, match="descriptor.size"):
        Descriptor(OCI_MANIFEST, d("a"), -1)


def test_to_bytes_is_canonical():
    m = Manifest(Descriptor(OCI_CONFIG, d("c"), 3), [Descriptor(OCI_LAYER_GZIP, d("1"), 4)],
                 annotations={"z": "ünï", "a": "1"})
    data = m.to_bytes()
    assert b" " not in data.replace("ünï".encode(), b"")
    assert "ünï".encode() in data  # UTF-8, not \\u escapes
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode()
    assert list(json.loads(data)) == sorted(json.loads(data))
    assert parse_manifest(data) == m
    assert parse_manifest(data).to_bytes() == data


def test_built_index_validates(validators):
    idx = Index([Descriptor(OCI_MANIFEST, d("a"), 10, platform=Platform("linux", "amd64"),
                            annotations={"org.opencontainers.image.ref.name": "latest"})])
    _valid(validators, "index", idx.to_bytes())
    assert idx.descriptor().media_type == OCI_INDEX
    assert parse_manifest(idx.to_bytes()) == idx


def test_layer_media_types():
    assert image.layer_compression(OCI_LAYER_GZIP) == "gzip"
    assert image.layer_compression(DOCKER_LAYER_GZIP) == "gzip"
    assert image.layer_compression(OCI_LAYER_ZSTD) == "zstd"
    assert image.layer_compression(OCI_LAYER) is None
    assert image.is_layer_type(DOCKER_FOREIGN_LAYER_GZIP)
    assert not image.is_layer_type(OCI_CONFIG)
    with pytest.raises(InvalidImage, match="not a layer media type"):
        image.layer_compression(OCI_CONFIG)
    assert image.to_oci_media_type(DOCKER_CONFIG) == OCI_CONFIG
    assert image.to_oci_media_type("application/x-custom") == "application/x-custom"
    assert image.OCI_TO_DOCKER[OCI_LAYER_GZIP] == DOCKER_LAYER_GZIP


# -- image config ------------------------------------------------------------------


def test_config_accessors(validators):
    data = json.dumps(CONFIG).encode()
    cfg = image.parse_config(data)
    assert (cfg.os, cfg.architecture, cfg.variant) == ("linux", "amd64", None)
    assert cfg.platform == Platform("linux", "amd64")
    assert cfg.created == "2024-01-02T03:04:05Z" and cfg.author is None
    assert cfg.entrypoint == ["/entrypoint.sh"]
    assert cfg.cmd == ["serve", "--port", "8080"]
    assert cfg.env == ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
    assert cfg.working_dir == "/srv" and cfg.user == "app:app"
    assert cfg.exposed_ports == {"8080/tcp": {}} and cfg.volumes == {"/data": {}}
    assert cfg.labels == {"org.opencontainers.image.title": "app"}
    assert cfg.stop_signal == "SIGQUIT"
    assert cfg.diff_ids == [d("1"), d("2")]
    assert cfg.chain_ids() == chain_ids([d("1"), d("2")])
    assert len(cfg.history) == 3
    _valid(validators, "config", cfg.to_bytes())
    assert json.loads(cfg.to_bytes()) == CONFIG
    assert ImageConfig.from_bytes(cfg.to_bytes()) == cfg


def test_docker_style_config_with_nulls():
    cfg = ImageConfig(DOCKER_STYLE_CONFIG)
    assert cfg.platform == Platform("linux", "arm64", "v8")
    assert cfg.entrypoint is None and cfg.cmd is None
    assert cfg.env == [] and cfg.volumes == {} and cfg.labels == {}
    assert cfg.working_dir == "" and cfg.user == "" and cfg.stop_signal is None
    assert cfg.history == []
    # Docker-only keys are kept: the bytes' digest is the image id.
    assert json.loads(cfg.to_bytes())["docker_version"] == "20.10.7"


def test_config_without_execution_parameters():
    cfg = ImageConfig({"architecture": "amd64", "os": "linux",
                       "rootfs": {"type": "layers", "diff_ids": []}})
    assert cfg.config == {} and cfg.entrypoint is None and cfg.env == []
    assert cfg.chain_ids() == []


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c.pop("architecture"), "config.architecture: required"),
    (lambda c: c.update(os=None), "config.os: expected a string, got null"),
    (lambda c: c.pop("rootfs"), "config.rootfs: required"),
    (lambda c: c["rootfs"].update(type="layer"), "config.rootfs.type: must be 'layers'"),
    (lambda c: c["rootfs"].pop("diff_ids"), "config.rootfs.diff_ids: required"),
    (lambda c: c["rootfs"]["diff_ids"].append("sha256:../../x"),
     "config.rootfs.diff_ids[2]: invalid digest"),
    (lambda c: c["config"].update(Env="PATH=/bin"), "config.config.Env: expected an array"),
    (lambda c: c["config"]["Cmd"].append(3), "config.config.Cmd[3]: expected a string"),
    (lambda c: c["config"].update(User=0), "config.config.User: expected a string"),
    (lambda c: c["config"].update(ExposedPorts={"80/tcp": True}),
     "config.config.ExposedPorts['80/tcp']: expected an object"),
    (lambda c: c["config"].update(Labels={"a": None}), "config.config.Labels['a']"),
    (lambda c: c["config"].update(ArgsEscaped="yes"), "config.config.ArgsEscaped"),
    (lambda c: c.update(config=[]), "config.config: expected an object"),
    (lambda c: c["history"][1].update(empty_layer="true"), "config.history[1].empty_layer"),
    (lambda c: c["history"].append([]), "config.history[3]: expected an object"),
    (lambda c: c.update(created=20240102), "config.created: expected a string"),
])
def test_config_errors_name_the_field(mutate, message):
    body = copy.deepcopy(CONFIG)
    mutate(body)
    with pytest.raises(InvalidArgument) as info:
        ImageConfig.from_bytes(json.dumps(body).encode())
    assert message in str(info.value)


def test_config_from_bad_bytes():
    with pytest.raises(InvalidImage, match="config: not valid JSON"):
        ImageConfig.from_bytes(b"{")
    with pytest.raises(InvalidImage, match="config: expected an object"):
        ImageConfig.from_bytes(b"[]")


# -- chain ids (config.md#layer-chainid) ------------------------------------------------


def test_chain_ids_follow_the_spec_formula():
    a, b, c = (digest.of_bytes(x) for x in (b"A", b"B", b"C"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([a]) == [a]
    assert chain_ids([]) == []
    # Order matters: ChainID(C) != ChainID(A|B|C).
    assert chain_ids([c, b, a])[-1] != abc


def test_chain_ids_known_value():
    # containerd's identity tests: ChainID of two layers.
    diff = ["sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4",
            "sha256:b3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"]
    expect = "sha256:" + hashlib.sha256(f"{diff[0]} {diff[1]}".encode()).hexdigest()
    assert chain_ids(diff) == [diff[0], expect]


def test_chain_ids_validate():
    with pytest.raises(InvalidArgument, match=r"diff_ids\[1\]: invalid digest"):
        chain_ids([d("a"), "sha256:nope"])


# -- platform selection (containerd's platforms.Only) ------------------------------------

LIST = parse_manifest(_bytes(docker_list()))

# (os, arch, variant) -> digest char of the chosen entry
SELECTIONS = [
    (("linux", "amd64", None), "a"),
    (("linux", "x86_64", None), "a"),
    (("linux", "x86-64", "v1"), "a"),
    (("Linux", "AMD64", None), "a"),
    (("linux", "amd64", "v3"), "a"),  # v3 runs v2, v1
    (("linux", "arm64", None), "d"),
    (("linux", "aarch64", None), "d"),
    (("linux", "arm64", "v8"), "d"),
    (("linux", "arm64", "8"), "d"),
    (("linux", "arm", None), "c"),  # arm defaults to v7
    (("linux", "arm", "7"), "c"),
    (("linux", "armhf", None), "c"),
    (("linux", "arm", "v6"), "b"),
    (("linux", "armel", None), "b"),
    (("linux", "arm", "v8"), "c"),  # v8 runs v7 first
    (("linux", "386", None), "e"),
    (("linux", "i386", None), "e"),
    (("linux", "ppc64le", None), "f"),
    (("linux", "s390x", None), "9"),
]


@pytest.mark.parametrize(("platform", "want"), SELECTIONS,
                         ids=["/".join(p for p in s[0] if p) for s in SELECTIONS])
def test_select_platform(platform, want):
    assert select_platform(LIST, *platform).digest == d(want)


def test_select_platform_defaults_to_linux_amd64():
    assert select_platform(LIST).digest == d("a")


def test_amd64_falls_back_to_386_and_arm64_to_arm():
    only_386 = Index([Descriptor(OCI_MANIFEST, d("e"), 1, platform=Platform("linux", "386"))])
    assert select_platform(only_386).digest == d("e")
    only_arm = Index([Descriptor(OCI_MANIFEST, d("b"), 1, platform=Platform("linux", "arm", "v6")),
                      Descriptor(OCI_MANIFEST, d("c"), 1, platform=Platform("linux", "arm", "v7"))])
    assert select_platform(only_arm, arch="arm64").digest == d("c")


def test_arm_v5_host_does_not_run_v6():
    only_v6 = Index([Descriptor(OCI_MANIFEST, d("b"), 1, platform=Platform("linux", "arm", "v6"))])
    with pytest.raises(NoMatchingPlatform):
        select_platform(only_v6, arch="arm", variant="v5")


def test_first_matching_entry_wins_and_non_manifests_are_skipped():
    idx = Index([
        Descriptor(OCI_MANIFEST, d("0"), 1),  # no platform
        Descriptor("application/vnd.in-toto+json", d("1"), 1, platform=Platform("linux", "amd64")),
        Descriptor(OCI_MANIFEST, d("2"), 1, platform=Platform("linux", "amd64")),
        Descriptor(OCI_MANIFEST, d("3"), 1, platform=Platform("linux", "amd64")),
    ])
    assert select_platform(idx).digest == d("2")


def test_no_matching_platform_lists_what_is_offered():
    idx = Index([Descriptor(OCI_MANIFEST, d("a"), 1, platform=Platform("windows", "amd64")),
                 Descriptor(OCI_MANIFEST, d("b"), 1, platform=Platform("linux", "riscv64"))])
    with pytest.raises(NoMatchingPlatform) as info:
        select_platform(idx)
    assert isinstance(info.value, NotFound)
    assert "linux/amd64" in str(info.value)
    assert "windows/amd64, linux/riscv64" in str(info.value)
    with pytest.raises(NoMatchingPlatform, match="offers: none"):
        select_platform(Index([]))


def test_normalize_platform():
    assert image.normalize_platform("linux", "aarch64", "v8") == ("linux", "arm64", None)
    assert image.normalize_platform("linux", "armhf") == ("linux", "arm", "v7")
    assert image.normalize_platform("linux", "arm", "5") == ("linux", "arm", "v5")
    assert image.normalize_platform("macos", "x86_64", "v1") == ("darwin", "amd64", None)
    assert image.normalize_platform("linux", "amd64", "v2") == ("linux", "amd64", "v2")
    assert Platform("linux", "aarch64", "8").normalized() == Platform("linux", "arm64")
    assert str(Platform("linux", "arm", "v7")) == "linux/arm/v7"
