"""Variable expansion in Dockerfile arguments (Dockerfile reference: Environment
replacement), the way BuildKit's shell lexer does it.

- `$name` and `${name}`; `${name:-word}`, `${name-word}`, `${name:+word}`,
  `${name+word}`, `${name:?msg}`, `${name?msg}`, and the pattern forms
  `${name#pat}`, `${name##pat}`, `${name%pat}`, `${name%%pat}`, `${name/pat/repl}`,
  `${name//pat/repl}` (`*` and `?` globs); `word` is expanded too;
- quotes are removed: nothing is expanded inside `'...'`; inside `"..."` the
  escape character only escapes `"`, `$` and itself;
- outside quotes the escape character (`\\`, or `` ` `` with the escape directive)
  makes the next character literal, so `\\$foo` is the text `$foo`;
- an unset variable expands to the empty string.

`Lexer.word(text, env)` gives one string; `Lexer.words(text, env)` splits on
unquoted blanks (COPY/ADD sources, EXPOSE, VOLUME).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from corral.errors import InvalidArgument

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")


class ExpansionError(InvalidArgument):
    """A malformed `${...}` or an unterminated quote; `${x:?msg}` of an unset x."""


def _glob_regex(pattern: str, *, greedy: bool) -> str:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _trim(value: str, op: str, pattern: str) -> str:
    if op in ("#", "##"):
        candidates = range(len(value) + 1) if op == "#" else range(len(value), -1, -1)
        regex = re.compile(_glob_regex(pattern, greedy=True), re.DOTALL)
        for end in candidates:
            if regex.fullmatch(value[:end]):
                return value[end:]
        return value
    candidates = range(len(value), -1, -1) if op == "%" else range(len(value) + 1)
    regex = re.compile(_glob_regex(pattern, greedy=True), re.DOTALL)
    for start in candidates:
        if regex.fullmatch(value[start:]):
            return value[:start]
    return value


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def done(self) -> bool:
        return self.pos >= len(self.text)


class Lexer:
    """Expands and unquotes Dockerfile words with the given escape character."""

    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def word(self, text: str, env: Mapping[str, str]) -> str:
        """`text` as one word: expanded, quotes and escapes removed."""
        return "".join(self._process(_Cursor(text), env, split=False, stop="")[0])

    def words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """`text` split on unquoted blanks, each word expanded and unquoted."""
        return self._process(_Cursor(text), env, split=True, stop="")[0]

    def heredoc(self, text: str, env: Mapping[str, str]) -> str:
        """A here-document body: `$` expansions and backslash escapes of `$`, `\\` and
        a backquote; quotes are kept (POSIX here-document rules)."""
        out: list[str] = []
        cur = _Cursor(text)
        while not cur.done():
            ch = cur.peek()
            if ch == "\\" and cur.peek(1) in ("$", "\\", "`"):
                cur.take()
                out.append(cur.take())
            elif ch == "$":
                out.append(self._dollar(cur, env))
            else:
                out.append(cur.take())
        return "".join(out)

    # -- the scanner ---------------------------------------------------------------
    def _process(self, cur: _Cursor, env: Mapping[str, str], *, split: bool,
                 stop: str) -> tuple[list[str], bool]:
        """Scan until end or an unnested `stop` char; returns (words, stopped)."""
        words: list[str] = []
        current: list[str] = []
        started = False
        while not cur.done():
            ch = cur.peek()
            if stop and ch == stop:
                cur.take()
                if started or current:
                    words.append("".join(current))
                return words, True
            if split and ch in " \t\n\r":
                cur.take()
                if started or current:
                    words.append("".join(current))
                current, started = [], False
                continue
            started = True
            if ch == self.escape:
                cur.take()
                if cur.done():
                    current.append(ch)
                else:
                    current.append(cur.take())
            elif ch == "'":
                cur.take()
                end = cur.text.find("'", cur.pos)
                if end < 0:
                    raise ExpansionError(f"unterminated single quote in {cur.text!r}")
                current.append(cur.text[cur.pos:end])
                cur.pos = end + 1
            elif ch == '"':
                cur.take()
                current.append(self._double(cur, env))
            elif ch == "$":
                current.append(self._dollar(cur, env))
            else:
                current.append(cur.take())
        if stop:
            raise ExpansionError(f"missing '{stop}' in {cur.text!r}")
        if started or current:
            words.append("".join(current))
        return words, False

    def _double(self, cur: _Cursor, env: Mapping[str, str]) -> str:
        out: list[str] = []
        while True:
            if cur.done():
                raise ExpansionError(f"unterminated double quote in {cur.text!r}")
            ch = cur.peek()
            if ch == '"':
                cur.take()
                return "".join(out)
            if ch == self.escape:
                cur.take()
                nxt = cur.peek()
                if nxt in ('"', "$", self.escape):
                    out.append(cur.take())
                else:
                    out.append(ch)
            elif ch == "$":
                out.append(self._dollar(cur, env))
            else:
                out.append(cur.take())

    def _name(self, cur: _Cursor) -> str:
        start = cur.pos
        if not _NAME_START.match(cur.peek() or " "):
            if cur.peek().isdigit():
                cur.take()
            return cur.text[start:cur.pos]
        while not cur.done() and _NAME_CHAR.match(cur.peek()):
            cur.take()
        return cur.text[start:cur.pos]

    def _dollar(self, cur: _Cursor, env: Mapping[str, str]) -> str:
        cur.take()  # $
        if cur.peek() != "{":
            name = self._name(cur)
            if not name:
                return "$"
            return env.get(name, "")
        cur.take()  # {
        name = self._name(cur)
        if not name:
            raise ExpansionError(f"bad substitution in {cur.text!r}: missing variable name")
        value = env.get(name)
        ch = cur.take()
        if ch == "}":
            return value or ""
        if ch == "":
            raise ExpansionError(f"missing '}}' in {cur.text!r}")
        colon = False
        if ch == ":":
            colon = True
            ch = cur.take()
        if ch in ("-", "+", "?"):
            words, _ = self._process(cur, env, split=False, stop="}")
            word = "".join(words)
            unset = value is None or (colon and value == "")
            if ch == "-":
                return word if unset else (value or "")
            if ch == "+":
                return "" if unset else word
            if unset:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            return value or ""
        if colon:
            raise ExpansionError(f"unsupported modifier ':{ch}' in ${{{name}...}} "
                                 f"of {cur.text!r}")
        if ch in ("#", "%"):
            op = ch
            if cur.peek() == ch:
                op += cur.take()
            pattern = self._raw_until(cur, "}")
            return _trim(value or "", op, self._expand_pattern(pattern, env))
        if ch == "/":
            replace_all = False
            if cur.peek() == "/":
                cur.take()
                replace_all = True
            pattern = self._raw_until(cur, "/}")
            replacement = ""
            if cur.text[cur.pos - 1] == "/":
                replacement = "".join(self._process(cur, env, split=False, stop="}")[0])
            regex = re.compile(_glob_regex(self._expand_pattern(pattern, env), greedy=True),
                               re.DOTALL)
            return regex.sub(lambda _m: replacement, value or "", count=0 if replace_all else 1)
        raise ExpansionError(f"unsupported modifier {ch!r} in ${{{name}...}} of {cur.text!r}")

    def _raw_until(self, cur: _Cursor, stops: str) -> str:
        start = cur.pos
        while not cur.done():
            ch = cur.peek()
            if ch == self.escape and cur.peek(1):
                cur.pos += 2
                continue
            if ch in stops:
                cur.take()
                return cur.text[start:cur.pos - 1]
            cur.take()
        raise ExpansionError(f"missing '}}' in {cur.text!r}")

    def _expand_pattern(self, pattern: str, env: Mapping[str, str]) -> str:
        """Expand variables in a pattern, keeping escaped glob characters escaped."""
        out: list[str] = []
        cur = _Cursor(pattern)
        while not cur.done():
            ch = cur.peek()
            if ch == self.escape and cur.peek(1):
                cur.take()
                out.append("\\" + cur.take())
            elif ch == "$":
                out.append(self._dollar(cur, env).replace("*", "\\*").replace("?", "\\?"))
            else:
                out.append(cur.take())
        return "".join(out)


__all__ = ["ExpansionError", "Lexer"]
