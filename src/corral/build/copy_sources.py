"""What a COPY or ADD copies, and the digest the build cache keys it by
(Dockerfile reference: COPY Source, COPY --from, ADD Source: local tar files, URLs;
Here-Documents).

`collect` turns the instruction's source words into `CopyItem`s (files and
directory trees, here-document bodies, downloaded URLs), the local tars ADD
extracts, and one text per source for the cache key (names, modes and contents
through `digest_entries`). Sources come from the build context (`context.py`
refuses anything outside it), or with `--from` from a mounted image or stage
root, where paths are resolved with symlinks confined to that root.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from corral.build.context import (
    BuildContext,
    DockerIgnore,
    Entry,
    HashCache,
    SourceNotFound,
    digest_entries,
)
from corral.build.copy_files import CopyItem, is_archive
from corral.build.dockerfile import Instruction
from corral.build.expand import Lexer
from corral.errors import Unavailable

URL_TIMEOUT = 120.0


class DownloadFailed(Unavailable):
    """ADD could not fetch a URL."""


@dataclass
class Collected:
    items: list[CopyItem] = field(default_factory=list)
    archives: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)  # downloads to delete afterwards

    def cleanup(self) -> None:
        for path in self.temporary:
            try:
                os.unlink(path)
            except OSError:
                pass


@dataclass(frozen=True)
class AddOptions:
    """ADD/COPY flags that change what is collected: `--exclude` patterns, ADD's
    `--checksum=sha256:...` (URLs) and `--unpack` (default: local tars yes, URLs no),
    COPY's `--parents` (keep the sources' directories; `/./` marks where they start)."""

    exclude: tuple[str, ...] = ()
    checksum: str | None = None
    unpack: bool | None = None
    parents: bool = False


def _filtered(item: CopyItem, top: str, matcher: DockerIgnore | None) -> CopyItem | None:
    """`item` without what `--exclude` matches (`top`: its path as written/matched)."""
    if matcher is None:
        return item
    if matcher.excluded(top.strip("/")):
        return None
    if item.is_dir:
        item.entries = [e for e in item.entries if not matcher.excluded(e.rel)]
    return item


def _pivot(name: str) -> str:
    """`x/./y/z` -> `x`: with --parents, directories are kept from after the `/./` on."""
    bare = name.lstrip("/")
    while bare.startswith("./"):
        bare = bare[2:].lstrip("/")
    if "/./" not in bare:
        return ""
    return os.path.normpath(bare.split("/./", 1)[0]).strip("/")


def _with_parents(item: CopyItem, path: str, rel: str, pivot: str) -> CopyItem:
    """`item` placed at its context path (from `pivot` on) under the destination."""
    kept = rel[len(pivot) + 1:] if pivot and rel.startswith(pivot + "/") else rel
    if not item.is_dir:
        return CopyItem(item.name, True, [Entry(path, kept, item.entries[0].st)])
    entries = [Entry(path, kept, os.lstat(path))] if kept and kept != "." else []
    prefix = "" if kept in ("", ".") else kept + "/"
    entries += [Entry(e.path, prefix + e.rel, e.st) for e in item.entries]
    return CopyItem(item.name, True, entries)


def collect(ins: Instruction, sources: list[str], *, context: BuildContext | None,
            from_root: str | None, lexer: Lexer, env: Mapping[str, str], cache: HashCache,
            tmpdir: str, options: AddOptions = AddOptions()) -> Collected:
    """The items of `sources` (see the module docstring)."""
    heredocs = {h.name: h for h in ins.heredocs}
    matcher = DockerIgnore(list(options.exclude)) if options.exclude else None
    if options.checksum is not None and not all("://" in name for name in sources):
        raise ins.error("--checksum is only for URL sources")
    out = Collected()
    try:
        for name in sources:
            plain = name.removeprefix("<<").removeprefix("-").strip("'\"")
            if name.startswith("<<") and plain in heredocs:
                doc = heredocs[plain]
                body = lexer.heredoc(doc.body, env) if doc.expand else doc.body
                out.items.append(CopyItem(plain, False, [], data=body.encode()))
                out.digests.append("heredoc:" + plain + ":" + body)
            elif from_root is not None:
                pivot = _pivot(name) if options.parents else ""
                for rel, real, found in image_sources(from_root, name):
                    item = _filtered(found, rel, matcher)
                    if item is None:
                        continue
                    if options.parents:
                        item = _with_parents(item, real, rel, pivot)
                    out.items.append(item)
                    out.digests.append(f"src:{name}:{item.name}:"
                                       + digest_entries(item.entries, cache))
            elif "://" in name:
                if ins.cmd != "ADD":
                    raise ins.error(f"{name}: COPY does not fetch URLs (use ADD)")
                item, path = fetch_url(name, tmpdir)
                out.temporary.append(path)
                digest = digest_file(path)
                if options.checksum is not None and options.checksum != digest:
                    raise ins.error(f"{name}: --checksum={options.checksum} does not match "
                                    f"the content ({digest})")
                if options.unpack and is_archive(path):
                    out.archives.append(path)
                else:
                    out.items.append(item)
                out.digests.append(f"url:{name}:" + digest_entries(item.entries, cache))
            else:
                assert context is not None
                pivot = _pivot(name) if options.parents else ""
                for source in context.sources([name]):
                    rel = os.path.relpath(source.path, context.root)
                    if ins.cmd == "ADD" and options.unpack is not False and \
                            not source.is_dir and is_archive(source.path):
                        if matcher is None or not matcher.excluded(rel):
                            out.archives.append(source.path)
                            out.digests.append("archive:" + digest_entries(source.entries,
                                                                           cache))
                        continue
                    item = _filtered(CopyItem(source.name, source.is_dir, source.entries),
                                     rel, matcher)
                    if item is None:
                        continue
                    if options.parents:
                        item = _with_parents(item, source.path, rel, pivot)
                    out.items.append(item)
                    out.digests.append(f"src:{name}:" + digest_entries(item.entries, cache))
    except BaseException:
        out.cleanup()
        raise
    return out


def digest_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def fetch_url(url: str, tmpdir: str) -> tuple[CopyItem, str]:
    """Download `url` (http/https) for ADD: a 0600 file named after the URL's last path
    component, its mtime from Last-Modified. Returns the item and the temp file."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise DownloadFailed(f"{url}: only http and https URLs can be added")
    filename = posixpath.basename(parsed.path) or "index.html"
    fd, path = tempfile.mkstemp(prefix="add-", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as response:
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
                    modified = response.headers.get("Last-Modified")
            except OSError as exc:
                raise DownloadFailed(f"{url}: {exc}") from None
        os.chmod(path, 0o600)
        if modified:
            try:
                stamp = parsedate_to_datetime(modified).timestamp()
                os.utime(path, (stamp, stamp))
            except (TypeError, ValueError):
                pass
        st = os.lstat(path)
    except BaseException:
        os.unlink(path)
        raise
    return CopyItem(filename, False, [Entry(path, filename, st)]), path


def image_sources(root: str, name: str) -> list[tuple[str, str, CopyItem]]:
    """COPY --from sources inside a mounted image or stage root (symlinks confined to
    it; globs in the last path component): (path in the root, host path, item)."""
    from corral.linux.mounts import secure_join

    cleaned = posixpath.normpath("/" + name).lstrip("/")
    head, tail = posixpath.split(cleaned)
    if any(c in tail for c in "*?["):
        parent = secure_join(root, head)
        try:
            names = sorted(n for n in os.listdir(parent) if fnmatch.fnmatchcase(n, tail))
        except OSError:
            names = []
        paths = [posixpath.join(head, n) for n in names]
        if not paths:
            raise SourceNotFound(f"{name}: no file in the source image matches")
    else:
        paths = [cleaned]
    items = []
    for rel in paths:
        real = secure_join(root, rel)
        try:
            st = os.stat(real)
        except OSError:
            raise SourceNotFound(f"{name}: no such file or directory in the source") from None
        if stat.S_ISDIR(st.st_mode):
            entries = []
            for dirpath, dirnames, filenames in os.walk(real):
                dirnames.sort()
                for child in sorted(dirnames + filenames):
                    path = os.path.join(dirpath, child)
                    entries.append(Entry(path, os.path.relpath(path, real), os.lstat(path)))
            entries.sort(key=lambda e: e.rel)
            items.append((rel, real, CopyItem(rel or "/", True, entries)))
        else:
            items.append((rel, real, CopyItem(posixpath.basename(rel), False,
                                              [Entry(real, posixpath.basename(rel), st)])))
    return items


__all__ = ["AddOptions", "Collected", "DownloadFailed", "collect", "digest_file", "fetch_url",
           "image_sources"]
