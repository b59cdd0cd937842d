"""corral.content.store: blobs appear only complete and verified, under their digest."""

from __future__ import annotations

import fcntl
import io
import os
import stat
import threading
import time
from pathlib import Path

import pytest

import corral.content
from corral.content import BlobNotFound, ContentStore, DigestMismatch
from corral.content import store as store_module
from corral.errors import InvalidArgument, NotFound
from corral.oci import digest
from corral.oci.image import OCI_LAYER_GZIP, Descriptor

HOSTILE = [
    "sha256:../x",
    "sha256:../../../../../../tmp/evil" + "a" * 30,
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "sha512:" + "a" * 64,
    "../sha256:" + "a" * 64,
    "sha256:" + "a" * 64 + "/..",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "",
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _blob_file(root: Path, value: str) -> Path:
    alg, hex_ = digest.parse(value)
    return root / "blobs" / alg / hex_


@pytest.fixture
def root(tmp_path):
    return tmp_path / "content"


@pytest.fixture
def store(root):
    return ContentStore(root)


def test_public_names():
    assert sorted(corral.content.__all__) == ["BlobNotFound", "ContentStore", "DigestMismatch"]
    for name in corral.content.__all__:
        assert getattr(corral.content, name) is getattr(store_module, name)
    assert issubclass(DigestMismatch, InvalidArgument)
    assert issubclass(BlobNotFound, NotFound)


def test_open_creates_layout(root, store):
    assert (root / "blobs").is_dir()
    assert (root / "ingest").is_dir()
    assert store.root == root


def test_write_bytes_commits_a_readonly_verified_blob(root, store):
    desc = store.write_bytes(b"hello")
    want = digest.of_bytes(b"hello")
    assert desc == Descriptor("application/octet-stream", want, 5)
    path = _blob_file(root, want)
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert os.listdir(root / "ingest") == []
    assert store.path(want) == path
    assert store.exists(want)
    assert store.info(want) == desc
    with store.open(want) as f:
        assert f.read() == b"hello"
    assert store.read_bytes(want) == b"hello"


def test_media_type_is_carried_into_the_descriptor(store):
    desc = store.write_bytes(b"layer", media_type=OCI_LAYER_GZIP)
    assert desc.media_type == OCI_LAYER_GZIP
    assert store.info(desc.digest, OCI_LAYER_GZIP) == desc


def test_ingest_from_a_file_object_in_chunks(root, store):
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read chunk
    want = digest.of_bytes(data)
    desc = store.ingest(io.BytesIO(data), want, len(data))
    assert desc.digest == want and desc.size == len(data)
    assert _blob_file(root, want).read_bytes() == data


def test_ingest_from_an_iterable(root, store):
    parts = [b"a" * 1000, b"", b"b" * 5, bytearray(b"cc")]
    desc = store.ingest(iter(parts))
    assert _blob_file(root, desc.digest).read_bytes() == b"".join(parts)
    assert desc.size == 1007


def test_sha512_blob_lives_under_its_algorithm(root, store):
    data = b"sha512 content"
    want = digest.of_bytes(data, "sha512")
    desc = store.write_bytes(data, want)
    assert desc.digest == want
    assert _blob_file(root, want).read_bytes() == data
    assert (root / "blobs" / "sha512").is_dir()
    assert list(store.walk()) == [want]


def test_digest_mismatch_leaves_nothing(root, store):
    wrong = digest.of_bytes(b"something else")
    with pytest.raises(DigestMismatch) as info:
        store.write_bytes(b"actual bytes", wrong)
    assert wrong in str(info.value)
    assert info.value.expected == wrong
    assert info.value.actual == digest.of_bytes(b"actual bytes")
    assert not _blob_file(root, wrong).exists()
    assert not _blob_file(root, digest.of_bytes(b"actual bytes")).exists()
    assert os.listdir(root / "ingest") == []
    assert list(store.walk()) == []


def test_short_content_is_a_size_mismatch(root, store):
    data = b"12345"
    with pytest.raises(DigestMismatch, match="expected size 6, got 5"):
        store.ingest(io.BytesIO(data), digest.of_bytes(data), 6)
    assert list(store.walk()) == []
    assert os.listdir(root / "ingest") == []


def test_long_content_stops_reading_at_the_size(root, store):
    consumed = []

    def endless():
        while True:
            consumed.append(1)
            yield b"x" * 1024

    with pytest.raises(DigestMismatch, match="longer than the expected size 2048"):
        store.ingest(endless(), None, 2048)
    assert len(consumed) == 3
    assert list(store.walk()) == []
    assert os.listdir(root / "ingest") == []


def test_right_digest_wrong_size_is_refused(store):
    data = b"abc"
    with pytest.raises(DigestMismatch):
        store.ingest([data], digest.of_bytes(data), 4)
    assert not store.exists(digest.of_bytes(data))


def test_a_failing_source_leaves_nothing(root, store):
    def broken():
        yield b"partial"
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        store.ingest(broken())
    assert os.listdir(root / "ingest") == []
    assert list(store.walk()) == []


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_digests_never_touch_the_file_system(tmp_path, root, store, bad):
    before = _tree(tmp_path)
    for call in (store.path, store.exists, store.info, store.open, store.delete,
                 store.read_bytes):
        with pytest.raises(InvalidArgument):
            call(bad)
    with pytest.raises(InvalidArgument):
        store.write_bytes(b"x", bad)
    with pytest.raises(InvalidArgument):
        store.ingest(iter([b"x"]), bad)
    assert _tree(tmp_path) == before


def test_bad_size_is_refused(store):
    for size in (-1, 1.0, True, "3"):
        with pytest.raises(InvalidArgument, match="expected size"):
            store.ingest([b"abc"], None, size)  # type: ignore[arg-type]


def test_missing_blob_is_not_found(store):
    missing = digest.of_bytes(b"missing")
    assert not store.exists(missing)
    for call in (store.path, store.info, store.open, store.delete, store.read_bytes):
        with pytest.raises(BlobNotFound, match=missing):
            call(missing)


def test_delete_removes_the_blob(root, store):
    desc = store.write_bytes(b"bye")
    store.delete(desc.digest)
    assert not _blob_file(root, desc.digest).exists()
    assert not store.exists(desc.digest)
    assert list(store.walk()) == []
    with pytest.raises(BlobNotFound):
        store.delete(desc.digest)


def test_walk_lists_blobs_and_skips_junk(root, store):
    digests = sorted(store.write_bytes(bytes([i])).digest for i in range(5))
    sha256_dir = root / "blobs" / "sha256"
    (sha256_dir / "not-a-digest").write_bytes(b"")
    (sha256_dir / ("A" * 64)).write_bytes(b"")
    (sha256_dir / ("b" * 64)).mkdir()
    (root / "blobs" / "md5").mkdir()
    (root / "blobs" / "md5" / ("c" * 32)).write_bytes(b"")
    assert list(store.walk()) == digests


def test_existing_blob_is_not_read_again(root, store):
    data = b"already here"
    want = store.write_bytes(data).digest

    def must_not_be_read():
        raise AssertionError("the source was read")
        yield b""  # pragma: no cover

    desc = store.ingest(must_not_be_read(), want, len(data))
    assert desc == Descriptor("application/octet-stream", want, len(data))
    with pytest.raises(DigestMismatch, match="stored blob with that digest has 12 bytes"):
        store.ingest(must_not_be_read(), want, 13)
    assert _blob_file(root, want).read_bytes() == data


def test_ingesting_the_same_content_twice_without_a_digest(root, store):
    first = store.write_bytes(b"same")
    second = store.write_bytes(b"same")
    assert first == second
    assert _blob_file(root, first.digest).read_bytes() == b"same"
    assert os.listdir(root / "ingest") == []


def test_concurrent_ingests_of_the_same_blob(root):
    data = os.urandom(2 << 20)
    want = digest.of_bytes(data)
    stores = [ContentStore(root) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    results: list[object] = []

    def worker(s: ContentStore) -> None:
        barrier.wait()
        try:
            # expected=None defeats the "already stored" shortcut: every
            # thread writes, verifies and renames onto the same name.
            results.append(s.ingest(io.BytesIO(data)))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, Descriptor) and r.digest == want for r in results), results
    assert _blob_file(root, want).read_bytes() == data
    assert list(stores[0].walk()) == [want]
    assert os.listdir(root / "ingest") == []


def test_concurrent_ingest_in_another_process(root):
    data = b"from two processes" * 10000
    want = digest.of_bytes(data)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            for _ in range(20):
                ContentStore(root, repair=False).ingest(io.BytesIO(data))
        except BaseException:  # noqa: BLE001 - the child must reach _exit
            code = 1
        os._exit(code)
    store = ContentStore(root)
    for _ in range(20):
        assert store.ingest(io.BytesIO(data)).digest == want
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _blob_file(root, want).read_bytes() == data
    assert os.listdir(root / "ingest") == []


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_open_removes_stale_unlocked_ingests(root):
    ContentStore(root)
    stale = root / "ingest" / "crashed-writer"
    stale.write_bytes(b"half a layer")
    _age(stale, 3600)
    fresh = root / "ingest" / "just-started"
    fresh.write_bytes(b"")
    stale_link = root / "ingest" / "odd-symlink"
    stale_link.symlink_to("/etc/passwd")
    os.utime(stale_link, (time.time() - 3600,) * 2, follow_symlinks=False)

    ContentStore(root)
    assert not stale.exists()
    assert not os.path.lexists(stale_link)
    assert Path("/etc/passwd").exists()
    assert fresh.exists()


def test_open_keeps_an_old_ingest_a_live_writer_holds(root):
    ContentStore(root)
    busy = root / "ingest" / "slow-download"
    busy.write_bytes(b"still coming")
    _age(busy, 3600)
    with open(busy, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        removed = ContentStore(root).repair()
        assert removed == []
        assert busy.exists()
    assert ContentStore(root, stale_after=0).repair() == []  # opened store repaired it
    assert not busy.exists()


def test_repair_can_be_skipped(root):
    ContentStore(root)
    stale = root / "ingest" / "left-over"
    stale.write_bytes(b"")
    _age(stale, 3600)
    ContentStore(root, repair=False)
    assert stale.exists()
    assert ContentStore(root, repair=False).repair() == ["left-over"]
    assert not stale.exists()


def test_read_bytes_limit(store):
    desc = store.write_bytes(b"x" * 100)
    assert store.read_bytes(desc.digest, max_size=100) == b"x" * 100
    with pytest.raises(InvalidArgument, match="100 bytes, more than the 99"):
        store.read_bytes(desc.digest, max_size=99)


def test_store_is_usable_after_the_ingest_dir_vanished(root, store):
    os.rmdir(root / "ingest")
    desc = store.write_bytes(b"again")
    assert _blob_file(root, desc.digest).read_bytes() == b"again"


# -- resumable writers (ingest/partial-<alg>-<hex>) -------------------------------------

def test_a_resumable_writer_leaves_a_partial_the_next_writer_continues(root, store):
    data = os.urandom(300_000)
    want = digest.of_bytes(data)
    with store.writer(want, len(data), resumable=True) as w:
        assert w.offset == 0
        w.write(data[:120_000])
    partial = root / "ingest" / f"partial-sha256-{want.split(':')[1]}"
    assert partial.read_bytes() == data[:120_000] and not store.exists(want)
    _age(partial, 3600)                       # a stale *partial* survives repair for a day
    assert ContentStore(root, stale_after=0).repair() == []
    with store.writer(want, len(data), resumable=True) as w:
        assert w.offset == 120_000            # rehashed, not refetched
        w.write(data[120_000:])
        desc = w.commit()
    assert desc == Descriptor("application/octet-stream", want, len(data))
    assert _blob_file(root, want).read_bytes() == data and not partial.exists()


def test_a_partial_whose_bytes_are_wrong_is_removed_at_commit(root, store):
    data = b"the real content" * 1000
    want = digest.of_bytes(data)
    partial = root / "ingest" / f"partial-sha256-{want.split(':')[1]}"
    partial.write_bytes(b"X" * 100)
    with store.writer(want, len(data), resumable=True) as w:
        assert w.offset == 100
        w.write(data[100:])
        with pytest.raises(DigestMismatch):
            w.commit()
    assert not partial.exists() and not store.exists(want)
    # too long for the blob: started over
    partial.write_bytes(b"Y" * (len(data) + 1))
    with store.writer(want, len(data), resumable=True) as w:
        assert w.offset == 0 and partial.stat().st_size == 0


def test_a_partial_another_writer_holds_is_not_shared(root, store):
    data = b"abc" * 1000
    want = digest.of_bytes(data)
    with store.writer(want, len(data), resumable=True) as first:
        first.write(data[:10])
        with store.writer(want, len(data), resumable=True) as second:
            assert second.offset == 0 and second.path != first.path
            second.write(data)
            assert os.pread(second.fd, 3, 0) == b"abc"     # followers read the fd
            second.commit()
    assert store.read_bytes(want) == data
    assert os.listdir(root / "ingest") == [f"partial-sha256-{want.split(':')[1]}"]


def test_a_writer_without_commit_leaves_nothing_unless_resumable(root, store):
    with store.writer(digest.of_bytes(b"x"), 1) as w:
        w.write(b"x")
    with store.writer(digest.of_bytes(b"y"), 1, resumable=True):
        pass                                  # no bytes: no partial
    assert os.listdir(root / "ingest") == []


def test_verify_before_commit(root, store):
    data = b"verified first" * 100
    want = digest.of_bytes(data)
    with store.writer(want, len(data), resumable=True) as w:
        w.write(data)
        assert w.verify() == want and not store.exists(want)   # checked, not published
        assert w.commit().digest == want
    assert store.read_bytes(want) == data
    with store.writer(digest.of_bytes(b"other"), 5, resumable=True) as w:
        w.write(b"wrong")
        with pytest.raises(DigestMismatch):
            w.verify()
    assert os.listdir(root / "ingest") == []
