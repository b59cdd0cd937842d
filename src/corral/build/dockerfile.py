"""Dockerfile parsing (Dockerfile reference: Format, Parser directives, Shell and
exec form, Here-Documents).

`parse(text)` turns a Dockerfile into a `Dockerfile`: its parser directives
(`# escape=`, `# syntax=`, `# check=`, only before anything else) and a list of
`Instruction`s, each with the line range it came from. What the parser does, as
BuildKit's does:

- leading whitespace is ignored; lines whose first non-blank character is `#`
  are comments and are removed, also inside a continued instruction;
- a line ending with the escape character (`\\` or the `escape` directive's
  `` ` ``), trailing blanks allowed, continues on the next line (the escape
  character is removed, the newline too); empty continuation lines are skipped;
- the instruction word is case-insensitive; `--name=value` flags after it are
  taken for the instructions that have flags (FROM, RUN, COPY, ADD, HEALTHCHECK);
- RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD and VOLUME take a JSON array (exec
  form) when the arguments parse as one, else the shell form (the raw text);
- RUN, COPY and ADD read here-documents: each `<<WORD`, `<<-WORD` (leading tabs
  stripped) or `<<"WORD"`/`<<'WORD'` (no expansion) takes the following lines up
  to a line holding only WORD.

Errors are `DockerfileError(InvalidArgument)` and name the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from corral.errors import InvalidArgument

INSTRUCTIONS = frozenset({
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
    "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
    "HEALTHCHECK", "SHELL",
})
#: Instructions whose arguments may be a JSON array (exec form).
JSON_FORM = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
#: Instructions that read here-documents.
HEREDOC_FORM = frozenset({"RUN", "COPY", "ADD"})
#: Flags each instruction accepts (`--name[=value]`).
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"network", "mount", "security"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude",
                      "unpack"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval",
                              "retries"}),
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
#: A here-document word (BuildKit's ParseHeredoc): [fd]<<[-]WORD, WORD maybe quoted.
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]+)$")


class DockerfileError(InvalidArgument):
    """The Dockerfile cannot be parsed; the message names the file and line."""

    def __init__(self, message: str, line: int | None = None, filename: str = "Dockerfile"):
        self.line = line
        self.filename = filename
        where = f"{filename}:{line}: " if line is not None else f"{filename}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class Heredoc:
    """One here-document: its delimiter word, body and whether to expand variables."""

    name: str
    body: str
    expand: bool = True


@dataclass(frozen=True)
class Instruction:
    """One instruction. `args` is the JSON array (exec form, `json=True`) or the words
    of a shell-form argument; `rest` is the raw argument text after the flags."""

    cmd: str
    rest: str
    line: int
    end_line: int
    original: str
    json: bool = False
    args: tuple[str, ...] = ()
    flags: tuple[tuple[str, str | None], ...] = ()
    heredocs: tuple[Heredoc, ...] = ()

    def flag(self, name: str, default: str | None = None) -> str | None:
        """The last value of flag `--name` (None: given without a value or absent)."""
        value = default
        for key, val in self.flags:
            if key == name:
                value = val if val is not None else "true"
        return value

    def flag_all(self, name: str) -> list[str]:
        return [v or "" for k, v in self.flags if k == name]

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(f"{self.cmd}: {message}", self.line)


@dataclass
class Dockerfile:
    directives: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    instructions: list[Instruction] = field(default_factory=list)


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    """Parser directives at the top; returns them and the index of the first other line."""
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if not match or not line.strip().startswith("#"):
            return found, index
        key = match.group(1).lower()
        if key not in ("escape", "syntax", "check"):
            return found, index  # an unknown directive is a comment and ends the directives
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used", index + 1)
        found[key] = match.group(2)
    return found, len(lines)


def _strip_continuation(line: str, escape: str) -> tuple[str, bool]:
    stripped = line.rstrip(" \t\r")
    if stripped.endswith(escape):
        return stripped[:-1], True
    return line.rstrip("\r"), False


def _split_flags(cmd: str, text: str, line: int,
                 filename: str) -> tuple[list[tuple[str, str | None]], str]:
    flags: list[tuple[str, str | None]] = []
    allowed = FLAGS.get(cmd, frozenset())
    rest = text.lstrip()
    while rest.startswith("--"):
        word, _, remainder = rest.partition(" ")
        word = word.split("\t", 1)[0]
        remainder = rest[len(word):]
        body = word[2:]
        if not body:
            break
        name, eq, value = body.partition("=")
        if name not in allowed:
            raise DockerfileError(f"{cmd}: unknown flag: --{name}", line, filename)
        flags.append((name, value if eq else None))
        rest = remainder.lstrip()
    return flags, rest


def split_words(text: str, escape: str) -> list[str]:
    """Blank-separated words, quotes and escapes kept (BuildKit's parseWords)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and i + 1 < len(text) and quote != "'":
            current.append(ch + text[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in " \t\n":
            if current:
                words.append("".join(current))
                current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if current:
        words.append("".join(current))
    return words


def _heredoc_words(text: str, escape: str) -> list[tuple[str, str, str]]:
    """(chomp "-" or "", quote or "", name) of each here-document word of a shell-form
    line: words (quotes kept) that are `<<NAME`, `<<-NAME`, `<<"NAME"`, `3<<NAME`;
    `<<<`, a quoted `"<<x"` or `cat<<x` are not."""
    found = []
    for word in split_words(text, escape):
        match = _HEREDOC.match(word)
        if not match:
            continue
        chomp, name = match.group(2), match.group(3).strip()
        quote = ""
        if len(name) >= 2 and name[0] in "'\"" and name[-1] == name[0]:
            quote, name = name[0], name[1:-1]
        if name and not any(c in name for c in "'\" \t"):
            found.append((chomp, quote, name))
    return found


def json_array(text: str) -> list[str] | None:
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text (see the module docstring)."""
    lines = text.removeprefix("\ufeff").split("\n")  # a UTF-8 BOM is ignored
    directives, first = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token {escape!r} does not match ` or \\", 1,
                              filename)
    result = Dockerfile(directives=directives, escape=escape)
    i = first
    n = len(lines)
    while i < n:
        raw = lines[i]
        start = i + 1
        stripped = raw.strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        pieces: list[str] = []
        piece, more = _strip_continuation(raw.lstrip(), escape)
        pieces.append(piece)
        end = start
        while more and i < n:
            nxt = lines[i]
            i += 1
            if nxt.strip().startswith("#"):
                continue
            if not nxt.strip():
                continue  # empty continuation line (BuildKit warns, then skips it)
            end = i
            piece, more = _strip_continuation(nxt, escape)
            pieces.append(piece)
        joined = "".join(pieces)
        word, _, after = joined.lstrip().partition(" ")
        word, _, tab_rest = word.partition("\t")
        if tab_rest:
            after = tab_rest + " " + after if after else tab_rest
        cmd = word.upper()
        if cmd not in INSTRUCTIONS:
            raise DockerfileError(f"unknown instruction: {word}", start, filename)
        flags, rest = _split_flags(cmd, after, start, filename)
        heredocs: list[Heredoc] = []
        if cmd in HEREDOC_FORM and "<<" in rest and not rest.lstrip().startswith("["):
            for chomp, quote, name in _heredoc_words(rest, escape):
                body_lines: list[str] = []
                while True:
                    if i >= n:
                        raise DockerfileError(f"{cmd}: here-document {name!r} is not "
                                              f"terminated (no line {name!r})", start, filename)
                    body_line = lines[i]
                    i += 1
                    check = body_line.lstrip("\t") if chomp else body_line
                    if check.rstrip("\r") == name:
                        break
                    body_lines.append(check)
                end = i
                body = "\n".join(body_lines) + "\n" if body_lines else ""
                heredocs.append(Heredoc(name, body, expand=not quote))
        rest = rest.rstrip()
        if not rest and not heredocs:
            raise DockerfileError(f"{cmd} requires at least one argument", start, filename)
        is_json = False
        args: tuple[str, ...] = ()
        if cmd in JSON_FORM:
            array = json_array(rest)
            if array is not None:
                is_json, args = True, tuple(array)
        result.instructions.append(Instruction(
            cmd=cmd, rest=rest, line=start, end_line=end, original=joined.strip(),
            json=is_json, args=args, flags=tuple(flags), heredocs=tuple(heredocs)))
    return result


__all__ = ["INSTRUCTIONS", "Dockerfile", "DockerfileError", "Heredoc", "Instruction", "json_array",
           "parse", "split_words"]
