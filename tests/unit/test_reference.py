"""corral.oci.reference against golden files of good and bad references.

data/references/good.txt: `input | normalized | familiar`;
data/references/bad.txt: `input | a fragment of the error message`.
The cases follow docker's distribution/reference (normalize_test.go, reference_test.go).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import InvalidArgument
from corral.oci import reference
from corral.oci.reference import InvalidReference, Reference

DATA = Path(__file__).parent / "data" / "references"
DIGEST = "sha256:" + "a" * 64


def _rows(name: str, fields: int) -> list[tuple[str, ...]]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = tuple(part.strip() for part in line.split(" | "))
        assert len(parts) == fields, line
        rows.append(parts)
    return rows


GOOD = _rows("good.txt", 3)
BAD = _rows("bad.txt", 2)


def test_golden_files_are_not_empty():
    assert len(GOOD) > 25 and len(BAD) > 30


@pytest.mark.parametrize(("text", "normalized", "familiar"), GOOD, ids=[g[0][:60] for g in GOOD])
def test_good(text, normalized, familiar):
    ref = Reference.parse(text)
    assert str(ref) == normalized
    assert ref.familiar() == familiar
    # Normalization is idempotent, and the familiar form parses back to the same reference.
    assert Reference.parse(normalized) == ref
    assert Reference.parse(familiar) == ref
    assert Reference(ref.domain, ref.path, ref.tag, ref.digest) == ref


@pytest.mark.parametrize(("text", "fragment"), BAD, ids=[b[0][:60] for b in BAD])
def test_bad(text, fragment):
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(f"invalid reference {text!r}")
    assert isinstance(info.value, InvalidArgument)


def test_parts():
    ref = Reference.parse("localhost:5000/team/app:v1@" + DIGEST)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "team/app", "v1",
                                                           DIGEST)
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name == "localhost:5000/team/app"
    official = Reference.parse("busybox")
    assert (official.domain, official.path, official.tag, official.digest) == (
        "docker.io", "library/busybox", "latest", None)
    assert official.name == "docker.io/library/busybox"
    assert official.familiar_name == "busybox"


def test_digest_only_gets_no_default_tag():
    ref = Reference.parse("busybox@" + DIGEST)
    assert ref.tag is None and ref.digest == DIGEST


def test_default_tag_can_be_turned_off():
    ref = Reference.parse("busybox", default_tag=False)
    assert ref.tag is None and ref.digest is None
    assert str(ref) == "docker.io/library/busybox"
    assert reference.parse("busybox", default_tag=False) == ref


def test_derived_references():
    ref = Reference.parse("quay.io/a/b:1@" + DIGEST)
    assert str(ref.with_tag("2")) == "quay.io/a/b:2"
    other = "sha256:" + "b" * 64
    assert str(ref.with_digest(other)) == f"quay.io/a/b@{other}"
    assert str(ref.name_only()) == "quay.io/a/b"
    with pytest.raises(InvalidReference, match="tag '.x'"):
        ref.with_tag(".x")
    with pytest.raises(InvalidArgument, match="64 hex digits"):
        ref.with_digest("sha256:1")


def test_values():
    a, b = Reference.parse("busybox"), Reference.parse("docker.io/library/busybox:latest")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Reference.parse("busybox:1")
    assert repr(a) == "Reference('docker.io/library/busybox:latest')"
    with pytest.raises(AttributeError):
        a.tag = "x"  # type: ignore[misc]


def test_constructor_validates():
    with pytest.raises(InvalidReference, match="registry 'bad host'"):
        Reference("bad host", "app")
    with pytest.raises(InvalidReference, match="path component 'App'"):
        Reference("docker.io", "App")
    with pytest.raises(InvalidReference, match="longer than 255"):
        Reference("docker.io", "a" * 250)


@pytest.mark.parametrize("value", [None, 5, b"busybox", ""])
def test_non_strings_and_empty(value):
    with pytest.raises(InvalidReference):
        Reference.parse(value)  # type: ignore[arg-type]


def test_split_domain():
    assert reference.split_domain("busybox") == ("docker.io", "library/busybox")
    assert reference.split_domain("index.docker.io/a/b") == ("docker.io", "a/b")
    assert reference.split_domain("localhost/x") == ("localhost", "x")
    assert reference.split_domain("foo/bar") == ("docker.io", "foo/bar")
    assert reference.split_domain("foo.com/bar") == ("foo.com", "bar")
