"""Metadata-only instructions: their effect on the image config (Dockerfile
reference: ENV, LABEL, MAINTAINER, EXPOSE, VOLUME, USER, WORKDIR, CMD, ENTRYPOINT,
STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD; image-spec config.md).

Each `apply_*` changes `config["config"]` (the OCI `config` object, Docker's
field names) and returns the canonical text recorded in the history and hashed
into the cache key. None adds a layer.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from corral.build.dockerfile import Instruction, json_array, split_words
from corral.build.expand import Lexer

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def env_map(config: dict[str, Any]) -> dict[str, str]:
    """The config's Env as an ordered dict."""
    out: dict[str, str] = {}
    for item in config.get("config", {}).get("Env") or []:
        name, _, value = item.partition("=")
        out[name] = value
    return out


def set_env(config: dict[str, Any], name: str, value: str) -> None:
    c = config.setdefault("config", {})
    env = env_map(config)
    env[name] = value
    c["Env"] = [f"{k}={v}" for k, v in env.items()]


def parse_key_values(ins: Instruction, lexer: Lexer, env: Mapping[str, str], *,
                     legacy: bool) -> list[tuple[str, str]]:
    """`K=V K2="v 2"` pairs of ENV/LABEL/ARG (values expanded); with `legacy`, the
    old `K value with spaces` form when the first word has no `=`."""
    rest = ins.rest.strip()
    if not rest:
        raise ins.error("requires at least one argument")
    raw_words = split_words(rest, lexer.escape)
    if legacy and "=" not in raw_words[0]:
        name = raw_words[0]
        value = rest[len(name):].strip()
        if not value:
            raise ins.error(f"{name}: must have two arguments (NAME VALUE) or NAME=VALUE")
        return [(name, lexer.word(value, env))]
    pairs = []
    for word in raw_words:
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise ins.error(f"{word!r}: expected NAME=VALUE")
        pairs.append((lexer.word(name, env), lexer.word(value, env)))
    return pairs


def command_of(ins: Instruction, config: dict[str, Any]) -> list[str]:
    """CMD/ENTRYPOINT/RUN argv: the exec form as is, the shell form through SHELL."""
    if ins.json:
        return list(ins.args)
    shell = config.get("config", {}).get("Shell") or DEFAULT_SHELL
    return list(shell) + [ins.rest]


def parse_duration(text: str, what: str, ins: Instruction) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds."""
    pos = 0
    total = 0
    if text == "0":
        return 0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if not match:
            raise ins.error(f"--{what}: invalid duration {text!r}")
        total += int(float(match.group(1)) * _UNITS[match.group(2)])
        pos = match.end()
    if not text:
        raise ins.error(f"--{what}: empty duration")
    return total


def apply_metadata(ins: Instruction, config: dict[str, Any], lexer: Lexer,
                   env: Mapping[str, str]) -> str:
    """Apply a metadata-only instruction to `config`; the history/cache text."""
    c = config.setdefault("config", {})
    cmd = ins.cmd
    if cmd == "ENV":
        pairs = parse_key_values(ins, lexer, env, legacy=True)
        for name, value in pairs:
            set_env(config, name, value)
        return "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    if cmd == "LABEL":
        pairs = parse_key_values(ins, lexer, env, legacy=True)
        labels = dict(c.get("Labels") or {})
        labels.update(pairs)
        c["Labels"] = labels
        return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
    if cmd == "MAINTAINER":
        config["author"] = ins.rest.strip()
        return "MAINTAINER " + ins.rest.strip()
    if cmd == "EXPOSE":
        ports = dict(c.get("ExposedPorts") or {})
        words = lexer.words(ins.rest, env)
        if not words:
            raise ins.error("requires at least one argument")
        for word in words:
            port, _, proto = word.partition("/")
            proto = (proto or "tcp").lower()
            low, _, high = port.partition("-")
            if not low.isdigit() or (high and not high.isdigit()) or \
                    proto not in ("tcp", "udp", "sctp"):
                raise ins.error(f"invalid port {word!r}")
            for number in range(int(low), int(high or low) + 1):
                ports[f"{number}/{proto}"] = {}
        c["ExposedPorts"] = ports
        return "EXPOSE " + " ".join(words)
    if cmd == "VOLUME":
        paths = [lexer.word(a, env) for a in ins.args] if ins.json else \
            lexer.words(ins.rest, env)
        if not paths or any(not p.strip() for p in paths):
            raise ins.error("requires at least one non-empty path")
        volumes = dict(c.get("Volumes") or {})
        for path in paths:
            volumes[path] = {}
        c["Volumes"] = volumes
        return "VOLUME " + json.dumps(paths)
    if cmd == "USER":
        user = lexer.word(ins.rest.strip(), env)
        if not user:
            raise ins.error("requires an argument")
        c["User"] = user
        return "USER " + user
    if cmd == "WORKDIR":
        path = lexer.word(ins.rest.strip(), env)
        if not path:
            raise ins.error("requires an argument")
        if not path.startswith("/"):
            path = posixpath.join(c.get("WorkingDir") or "/", path)
        c["WorkingDir"] = posixpath.normpath(path)
        return "WORKDIR " + c["WorkingDir"]
    if cmd in ("CMD", "ENTRYPOINT"):
        argv = command_of(ins, config)
        if cmd == "CMD":
            c["Cmd"] = argv
        else:
            c["Entrypoint"] = argv
        return f"{cmd} {json.dumps(argv)}"
    if cmd == "STOPSIGNAL":
        signal = lexer.word(ins.rest.strip(), env)
        if not signal:
            raise ins.error("requires an argument")
        c["StopSignal"] = signal
        return "STOPSIGNAL " + signal
    if cmd == "SHELL":
        if not ins.json or not ins.args:
            raise ins.error('requires the arguments as a JSON array, e.g. ["/bin/sh", "-c"]')
        c["Shell"] = list(ins.args)
        return "SHELL " + json.dumps(list(ins.args))
    if cmd == "HEALTHCHECK":
        return _healthcheck(ins, c)
    if cmd == "ONBUILD":
        trigger = ins.rest.strip()
        first = trigger.split(None, 1)[0].upper() if trigger else ""
        if first in ("ONBUILD", "FROM", "MAINTAINER", ""):
            raise ins.error(f"{first or 'an empty trigger'} is not allowed as an ONBUILD "
                            "trigger")
        c["OnBuild"] = list(c.get("OnBuild") or []) + [trigger]
        return "ONBUILD " + trigger
    raise ins.error("is not a metadata instruction")  # pragma: no cover


def _healthcheck(ins: Instruction, c: dict[str, Any]) -> str:
    rest = ins.rest.strip()
    word, _, after = rest.partition(" ")
    if word.upper() == "NONE":
        if after.strip() or ins.flags:
            raise ins.error("NONE takes no other arguments")
        c["Healthcheck"] = {"Test": ["NONE"]}
        return "HEALTHCHECK NONE"
    if word.upper() != "CMD":
        raise ins.error("expected CMD or NONE")
    after = after.strip()
    array = json_array(after)
    test = ["CMD"] + array if array is not None else ["CMD-SHELL", after]
    if not after:
        raise ins.error("CMD requires a command")
    check: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        value = ins.flag(flag)
        if value is not None:
            check[key] = parse_duration(value, flag, ins)
    retries = ins.flag("retries")
    if retries is not None:
        if not retries.isdigit():
            raise ins.error(f"--retries: {retries!r} is not a number")
        check["Retries"] = int(retries)
    c["Healthcheck"] = check
    return "HEALTHCHECK " + json.dumps(check, sort_keys=True)


__all__ = ["DEFAULT_SHELL", "apply_metadata", "command_of", "env_map", "parse_key_values",
           "set_env"]
