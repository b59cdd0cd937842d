"""Stages of a Dockerfile (Dockerfile reference: FROM, Understand how ARG and FROM
interact, multi-stage builds).

`split_stages` cuts the instructions at each FROM: the ARGs before the first
FROM are the global (meta) args, usable in FROM lines; `FROM [--platform=P]
IMAGE [AS NAME]`. `needed_stages` is the target stage and, transitively, the
stages it uses through `FROM <stage>`, `COPY --from=<stage>` and `RUN
--mount=...,from=<stage>` — only those run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.build.dockerfile import Dockerfile, DockerfileError, Instruction, split_words
from corral.build.expand import Lexer


@dataclass
class Stage:
    index: int
    name: str | None
    base: str
    platform: str | None
    from_ins: Instruction
    instructions: list[Instruction] = field(default_factory=list)


#: Proxy build args usable without an ARG; kept out of the cache key and history.
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


def platform_args(build_args: Mapping[str, str]) -> dict[str, str | None]:
    """The automatic platform ARGs of the global scope (this host builds for itself)."""
    from corral.image.transports.tarball import host_arch

    arch = host_arch()
    values: dict[str, str | None] = {}
    for prefix in ("TARGET", "BUILD"):
        values.update({f"{prefix}PLATFORM": f"linux/{arch}", f"{prefix}OS": "linux",
                       f"{prefix}ARCH": arch, f"{prefix}VARIANT": ""})
    values.update({k: v for k, v in build_args.items() if k in values})
    return values


def meta_args(dockerfile: Dockerfile, build_args: Mapping[str, str]
              ) -> tuple[dict[str, str | None], list[Instruction]]:
    """The global ARGs (before the first FROM) with their values, and those ARGs;
    the automatic platform ARGs are there too."""
    lexer = Lexer(dockerfile.escape)
    values: dict[str, str | None] = platform_args(build_args)
    found: list[Instruction] = []
    for ins in dockerfile.instructions:
        if ins.cmd == "FROM":
            break
        if ins.cmd != "ARG":
            raise DockerfileError(f"{ins.cmd} before the first FROM (only ARG may come "
                                  "before FROM)", ins.line)
        found.append(ins)
        for name, value in parse_arg(ins, lexer, {k: v for k, v in values.items()
                                                  if v is not None}):
            values[name] = build_args.get(name, value)
    return values, found


def parse_arg(ins: Instruction, lexer: Lexer, env: Mapping[str, str]
              ) -> list[tuple[str, str | None]]:
    """`ARG name[=default] ...`: names with their (expanded) defaults."""
    words = split_words(ins.rest.strip(), lexer.escape)
    if not words:
        raise ins.error("requires at least one argument")
    out: list[tuple[str, str | None]] = []
    for word in words:
        name, eq, value = word.partition("=")
        if not name:
            raise ins.error(f"{word!r}: missing name")
        out.append((name, lexer.word(value, env) if eq else None))
    return out


def split_stages(dockerfile: Dockerfile, meta: Mapping[str, str | None]) -> list[Stage]:
    lexer = Lexer(dockerfile.escape)
    env = {k: v for k, v in meta.items() if v is not None}
    stages: list[Stage] = []
    names: set[str] = set()
    for ins in dockerfile.instructions:
        if ins.cmd == "FROM":
            words = ins.rest.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
                raise ins.error("expected FROM [--platform=PLATFORM] IMAGE [AS NAME]")
            base = lexer.word(words[0], env)
            if not base:
                raise ins.error(f"{words[0]!r} expands to an empty image name")
            name = words[2].lower() if len(words) == 3 else None
            if name is not None:
                if name in names:
                    raise ins.error(f"duplicate stage name {name!r}")
                if name.isdigit() or not name[0].isalpha():
                    raise ins.error(f"invalid stage name {name!r}")
                names.add(name)
            platform = ins.flag("platform")
            if platform is not None:
                platform = lexer.word(platform, env)
            stages.append(Stage(len(stages), name, base, platform, ins))
        elif stages:
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError("no FROM instruction: a Dockerfile must have at least one stage")
    return stages


def find_stage(stages: list[Stage], ref: str, before: int) -> Stage | None:
    """The stage named `ref` (or numbered) among the first `before` stages."""
    ref = ref.lower()
    for stage in stages[:before]:
        if stage.name == ref or (ref.isdigit() and int(ref) == stage.index):
            return stage
    return None


def needed_stages(stages: list[Stage], target: Stage, lexer: Lexer,
                  meta: Mapping[str, str | None]) -> set[int]:
    env = {k: v for k, v in meta.items() if v is not None}
    needed: set[int] = set()
    todo = [target]
    while todo:
        stage = todo.pop()
        if stage.index in needed:
            continue
        needed.add(stage.index)
        base = find_stage(stages, stage.base, stage.index)
        if base is not None:
            todo.append(base)
        for ins in stage.instructions:
            refs = [ins.flag("from")] if ins.cmd == "COPY" else []
            if ins.cmd == "RUN":  # RUN --mount=...,from=<stage>
                for mount in ins.flag_all("mount"):
                    for part in mount.split(","):
                        key, _, value = part.partition("=")
                        if key.strip().lower() == "from":
                            refs.append(value)
            for ref in refs:
                if not ref:
                    continue
                used = find_stage(stages, lexer.word(ref, env), stage.index)
                if used is not None:
                    todo.append(used)
                elif find_stage(stages, lexer.word(ref, env), len(stages)) is not None:
                    raise ins.error(f"from={ref}: a stage can only use an earlier stage")
    return needed


__all__ = ["PROXY_ARGS", "Stage", "find_stage", "meta_args", "needed_stages", "parse_arg",
           "platform_args", "split_stages"]
