"""The build context: `.dockerignore`, COPY/ADD sources, and their content hash
(Dockerfile reference: .dockerignore file, COPY Source, ADD Source).

- `.dockerignore` (moby's patternmatcher; `<Dockerfile>.dockerignore` beside the
  Dockerfile wins): one pattern a line, `#` comments,
  `!` exceptions, leading `/` and `./` dropped, Go `filepath.Match` syntax plus
  `**` (any number of directories); a path is excluded when the last pattern
  matching it or one of its parent directories is not an exception.
- Sources are relative to the context root, may be globs (`*`, `?`, `[...]`),
  and must stay inside it: a `..` that leaves the context, or a symlink on the
  way that points outside it (absolute or relative), is refused with
  `OutsideContext`. Symlinks *inside* a copied directory are copied as links.
- `Source.digest()` hashes what a COPY would produce from the sources (relative
  names, types, permission bits, contents, link targets — not owners or times),
  so the build cache sees a changed file. File contents are hashed once and
  remembered in a stat cache (inode, size, mtime, ctime) across builds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from corral.errors import InvalidArgument, NotFound

_GLOB_CHARS = re.compile(r"[*?\[]")


class OutsideContext(InvalidArgument):
    """A COPY/ADD source would leave the build context (`..`, symlinks)."""


class SourceNotFound(NotFound):
    """A COPY/ADD source does not exist in the context (or is excluded)."""


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Go filepath.Match pattern with `**`, as moby's patternmatcher compiles it."""
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"bad pattern {pattern!r}: unterminated '['")
            body = pattern[i + 1:end]
            if body.startswith("^"):
                body = "!" + body[1:]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def _clean(path: str) -> str:
    """filepath.Clean of a relative path ('' for the root)."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            else:
                parts.append("..")
            continue
        parts.append(part)
    return "/".join(parts)


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    exception: bool
    regex: re.Pattern[str]


class DockerIgnore:
    """The rules of a `.dockerignore` file."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[IgnoreRule] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            line = _clean(line.lstrip("/"))
            if not line:
                continue
            self.rules.append(IgnoreRule(line, exception, _pattern_regex(line)))
        self.has_exceptions = any(r.exception for r in self.rules)

    @classmethod
    def load(cls, context: Path, dockerfile: Path | None = None) -> DockerIgnore:
        """`<Dockerfile>.dockerignore` beside the Dockerfile when there is one (BuildKit),
        else the context's `.dockerignore`."""
        candidates = [context / ".dockerignore"]
        if dockerfile is not None:
            candidates.insert(0, Path(str(dockerfile) + ".dockerignore"))
        for path in candidates:
            try:
                return cls(path.read_text().splitlines())
            except FileNotFoundError:
                continue
        return cls([])

    def excluded(self, rel: str) -> bool:
        """Whether the context-relative path `rel` is excluded."""
        if not self.rules or not rel:
            return False
        parents = []
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            parents.append("/".join(parts[:i]))
        result = False
        for rule in self.rules:
            if any(rule.regex.match(p) for p in parents):
                result = not rule.exception
        return result


def resolve_in_context(root: Path, rel: str, *, follow_last: bool = True) -> str:
    """`rel` resolved inside the context `root`, following symlinks that stay inside
    (a context-relative path, '' for the root); OutsideContext otherwise."""
    parts = [p for p in rel.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if not resolved:
                raise OutsideContext(f"{rel}: forbidden path outside the build context")
            resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if not parts and not follow_last:
            resolved.append(part)
            break
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        links += 1
        if links > 255:
            raise OutsideContext(f"{rel}: too many symlinks")
        if target.startswith("/"):
            raise OutsideContext(f"{rel}: symlink {'/'.join(resolved + [part])} -> {target} "
                                 "points outside the build context")
        new_parts = [p for p in target.split("/") if p and p != "."]
        depth = len(resolved)
        for p in new_parts:
            depth = depth - 1 if p == ".." else depth + 1
            if depth < 0:
                raise OutsideContext(f"{rel}: symlink {'/'.join(resolved + [part])} -> "
                                     f"{target} points outside the build context")
        parts = new_parts + parts
    return "/".join(resolved)


@dataclass(frozen=True)
class Entry:
    """One file to copy: its path on the host, its path relative to the copy's
    destination, and its lstat."""

    path: str
    rel: str
    st: os.stat_result


@dataclass
class Source:
    """One resolved COPY/ADD source: a file or a directory tree (its entries)."""

    name: str  # as written in the Dockerfile
    path: str  # absolute path on the host
    is_dir: bool
    entries: list[Entry]


class HashCache:
    """File content digests remembered by (path, inode, size, mtime, ctime)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, list] = {}
        self.used: set[str] = set()
        self.dirty = False
        if path is not None:
            try:
                self.data = json.loads(path.read_text())
            except (OSError, ValueError):
                self.data = {}

    def digest(self, path: str, st: os.stat_result) -> str:
        key = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        self.used.add(path)
        known = self.data.get(path)
        if known is not None and known[:4] == key:
            return known[4]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        value = h.hexdigest()
        self.data[path] = key + [value]
        self.dirty = True
        return value

    def save(self, context: Path | None = None) -> None:
        """Write the cache; entries under `context` that this build did not use (files
        gone or no longer copied) are dropped, other contexts' entries kept."""
        if context is not None:
            prefix = str(context).rstrip("/") + "/"
            stale = [p for p in self.data if p.startswith(prefix) and p not in self.used]
            for path in stale:
                del self.data[path]
            self.dirty = self.dirty or bool(stale)
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, separators=(",", ":")))
        os.replace(tmp, self.path)
        self.dirty = False


def digest_entries(entries: list[Entry], cache: HashCache) -> str:
    """The content digest of a list of entries (see the module docstring)."""
    h = hashlib.sha256()
    for e in entries:
        mode = e.st.st_mode
        if stat.S_ISREG(mode):
            what = "f " + cache.digest(e.path, e.st)
        elif stat.S_ISLNK(mode):
            what = "l " + os.readlink(e.path)
        elif stat.S_ISDIR(mode):
            what = "d"
        else:
            what = f"o {stat.S_IFMT(mode)}"
        h.update(f"{e.rel}\0{stat.S_IMODE(mode):o}\0{what}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class BuildContext:
    """A context directory with its `.dockerignore` applied."""

    def __init__(self, root: Path, hash_cache: HashCache | None = None, *,
                 dockerfile: Path | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotFound(f"build context {root} is not a directory")
        self.ignore = DockerIgnore.load(self.root, dockerfile)
        self.cache = hash_cache or HashCache(None)
        self._listing: list[str] | None = None

    def _walk(self, rel: str) -> Iterator[tuple[str, os.stat_result]]:
        """Entries below the context-relative directory `rel` (not excluded), sorted."""
        base = os.path.join(self.root, rel) if rel else str(self.root)
        try:
            names = sorted(os.listdir(base))
        except OSError as exc:
            raise SourceNotFound(f"{rel or '.'}: {exc.strerror}") from None
        for name in names:
            child = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(base, name))
            if self.ignore.excluded(child):
                if stat.S_ISDIR(st.st_mode) and self.ignore.has_exceptions:
                    yield from self._walk(child)
                continue
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                yield from self._walk(child)

    def listing(self) -> list[str]:
        if self._listing is None:
            self._listing = [rel for rel, _ in self._walk("")]
        return self._listing

    def sources(self, names: list[str]) -> list[Source]:
        """Resolve COPY/ADD source names (globs allowed) into Sources."""
        found: list[Source] = []
        for name in names:
            cleaned = _clean(name.lstrip("/"))
            if cleaned == ".." or cleaned.startswith("../"):
                raise OutsideContext(f"{name}: forbidden path outside the build context")
            if _GLOB_CHARS.search(cleaned):
                regex = _pattern_regex(cleaned)
                matches = [rel for rel in self.listing() if regex.match(rel)]
                if not matches:
                    raise SourceNotFound(f"{name}: no source files were specified "
                                         "(no file in the build context matches)")
                for rel in matches:
                    found.append(self._source(name, rel))
            else:
                found.append(self._source(name, cleaned))
        return found

    def _source(self, name: str, rel: str) -> Source:
        real = resolve_in_context(self.root, rel)
        path = os.path.join(self.root, real) if real else str(self.root)
        if real and (self.ignore.excluded(real) or self.ignore.excluded(rel)):
            raise SourceNotFound(f"{name}: not found in the build context "
                                 "(excluded by .dockerignore)")
        try:
            st = os.stat(path)
        except OSError:
            raise SourceNotFound(f"{name}: no such file or directory in the build "
                                 "context") from None
        if stat.S_ISDIR(st.st_mode):
            entries = [Entry(os.path.join(self.root, child), child[len(real) + 1:] if real
                             else child, cst) for child, cst in self._walk(real)]
            return Source(name, path, True, entries)
        return Source(name, path, False, [Entry(path, os.path.basename(rel), st)])


__all__ = ["BuildContext", "DockerIgnore", "Entry", "HashCache", "OutsideContext", "Source",
           "SourceNotFound", "digest_entries", "resolve_in_context"]
