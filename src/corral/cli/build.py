"""`corral build` (also `corral image build`): podman build's main flags.

    corral build [-t NAME]... [-f FILE] [--target STAGE] [--build-arg K=V]...
                 [--label K=V]... [--no-cache] [--pull] [--network host|none]
                 [--platform linux/ARCH] [--iidfile FILE] [--secret id=ID,src=PATH]...
                 [-q] [CONTEXT]

Steps are printed as they run (`STEP n/N: ...`, RUN output, `--> Using cache`),
the image id last on stdout. The work is `corral.build.executor.run_build`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from corral.cli import errors


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("context", nargs="?", default=".", metavar="CONTEXT",
                   help="build context directory (default .)")
    p.add_argument("-t", "--tag", action="append", default=[], help="name the image (repeatable)")
    p.add_argument("-f", "--file", help="the Dockerfile (default CONTEXT/Containerfile or "
                                       "CONTEXT/Dockerfile; - reads stdin)")
    p.add_argument("--target", help="build up to this stage")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--no-cache", action="store_true", help="run every step")
    p.add_argument("--pull", action="store_true", help="pull base images even when present")
    p.add_argument("--network", default="host", choices=("host", "none"),
                   help="RUN steps' network (default host)")
    p.add_argument("--platform", help="only linux/<host arch>")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--iidfile", metavar="FILE", help="write the image id to FILE")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=PATH",
                   help="a file RUN --mount=type=secret,id=ID can read (repeatable)")
    p.set_defaults(func=cmd_build)


def register(commands: Any) -> None:
    """`corral build`, and `corral image build` when the `image` noun is registered."""
    _flags(commands.add_parser("build", help="build an image from a Dockerfile"))
    image = commands.choices.get("image")
    for action in getattr(image, "_actions", ()):
        if isinstance(action, argparse._SubParsersAction):
            _flags(action.add_parser("build", help="build an image from a Dockerfile"))


def _pairs(values: list[str], flag: str, *, from_env: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, eq, value = item.partition("=")
        if not name:
            raise errors.UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        if not eq and from_env:
            if name not in os.environ:
                continue
            value = os.environ[name]
        out[name] = value
    return out


def _secrets(values: list[str]) -> dict[str, str]:
    """`--secret id=ID,src=PATH` (type=file, the default) -> {ID: absolute PATH}."""
    secrets: dict[str, str] = {}
    for spec in values:
        fields = dict(part.partition("=")[::2] for part in spec.split(","))
        ident = fields.get("id")
        source = fields.get("src") or fields.get("source")
        if fields.get("type", "file") != "file" or not ident or not source:
            raise errors.UsageError(f"--secret {spec!r}: expected id=ID,src=PATH")
        if not os.path.isfile(source):
            raise errors.UsageError(f"--secret {spec!r}: {source} is not a file")
        secrets[ident] = os.path.abspath(source)
    return secrets


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds: the step's container is removed


def cmd_build(args: argparse.Namespace, ctx: Any) -> int:
    from corral.build.container import StepFailed
    from corral.build.executor import BuildOptions, run_build
    from corral.engine.oci import runtime_root

    context = Path(args.context)
    text = None
    dockerfile = None
    if args.file == "-":
        text = sys.stdin.read()
    elif args.file:
        dockerfile = Path(args.file)
    quiet = args.quiet
    out = sys.stdout

    def log(line: str) -> None:
        if not quiet:
            out.write(line + "\n")
            out.flush()

    def output(data: bytes) -> None:
        if not quiet:
            out.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def pull(name: str) -> None:
        from corral.image import transports
        from corral.registry.client.config import RegistryOptions
        from corral.registry.client.progress import for_terminal

        opts = RegistryOptions()
        opts.progress = for_terminal(True)
        source = transports.parse("docker://" + name, registry=opts, tmpdir=ctx.tmpdir)
        dest = transports.parse("containers-storage:", store=ctx.store)
        log(f"Pulling {name}")
        transports.copy(source, dest)

    options = BuildOptions(
        context=context, dockerfile=dockerfile, dockerfile_text=text, tags=list(args.tag),
        target=args.target, build_args=_pairs(args.build_arg, "--build-arg", from_env=True),
        labels=_pairs(args.label, "--label", from_env=False), no_cache=args.no_cache,
        pull=args.pull, network=args.network, runtime=ctx.runtime,
        runtime_root=runtime_root(ctx.root, ctx.runtime), platform=args.platform,
        log=log, output=output, pull_image=pull, secrets=_secrets(args.secret))
    signal.signal(signal.SIGTERM, _terminated)
    try:
        result = run_build(ctx.store, options)
    except StepFailed as exc:  # a RUN that failed exits 1, like podman build (others: 125)
        if quiet and exc.output:
            sys.stderr.write(exc.output)
        errors.report(exc)
        return 1
    if args.iidfile:
        Path(args.iidfile).write_text(result.image_id)
    print(result.image_id.split(":", 1)[1])
    return 0


__all__ = ["cmd_build", "register"]
