"""`corral`: the user command (podman/docker names and flags). It only parses; the
library does the work. One module per noun: `cli.image` (load, save, import,
images, rmi, tag, inspect, history, image prune|busybox|debian), `cli.container`
(create, run, rm, ps, export — a minimal foreground runner until the engine of
issue 6 exists). Errors become one line and an exit code in `cli.errors`.

Global options: `--root DIR` (the store; default $CORRAL_ROOT or /var/lib/corral),
`--storage-driver overlay|vfs`, `--runtime PATH` (an OCI runtime with runc's CLI;
default corral-runtime next to this interpreter), `--debug` (tracebacks).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

from corral.cli import errors
from corral.quick_exit import collect_garbage_from_now

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any


class Context:
    """What every command gets: parsed global options and a lazily opened store."""

    def __init__(self, args: argparse.Namespace) -> None:
        from corral.cli import prelaunch
        from corral.engine import config_file
        from corral.storage.store import ROOT_ENV, default_root

        # flags > environment > config files (/etc/corral/corral.conf, $CORRAL_CONFIG) > built-in
        self.config = prelaunch.config() or config_file.load()
        self.root = Path(args.root) if args.root else (
            default_root() if os.environ.get(ROOT_ENV) or not self.config.root
            else Path(self.config.root))
        self.driver = args.storage_driver or self.config.driver
        self.runtime = args.runtime or os.environ.get("CORRAL_OCI_RUNTIME") or \
            _resolve_runtime(self.config.runtime) or _default_runtime()
        self.debug = args.debug
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from corral.storage import Store

            self._store = Store.open(self.root, self.driver)
        return self._store

    @property
    def tmpdir(self) -> str:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    @property
    def runtime_root(self) -> str:
        return str(self.root / "runtime")


def _resolve_runtime(name: str | None) -> str | None:
    """A configured runtime: a path, or a name looked up on $PATH (kept if not found)."""
    if not name or "/" in name:
        return name
    import shutil

    return shutil.which(name) or name


def _default_runtime() -> str:
    beside = Path(sys.executable).parent / "corral-runtime"
    if beside.exists():
        return str(beside)
    from corral.programs import which

    return which("corral-runtime") or "corral-runtime"


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, given the terminal's width: its own default asks
    shutil.get_terminal_size, and argparse builds one per add_argument, so importing
    shutil (with bz2 and lzma) on every command only to never print help."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else _columns() - 2)


@functools.cache
def _columns() -> int:
    """As shutil.get_terminal_size().columns: $COLUMNS, the terminal on stdout, or 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"Error: {message}", file=sys.stderr)
        print(f"See '{self.prog} --help'.", file=sys.stderr)
        raise SystemExit(errors.EXIT_ERROR)


#: the modules that register commands, in registration order (later ones may add verbs
#: to nouns that earlier ones made: `build` to `image`, `system` to `container`)
MODULES = ("image", "build", "container", "registry_client", "registry", "volume", "network",
           "system", "cri")
#: top-level command -> the modules it needs; any other word loads them all (help, typos)
OWNERS: dict[str, tuple[str, ...]] = {
    **{c: ("image",) for c in ("history", "images", "import", "load", "rmi", "save",
                               "tag")},
    "inspect": ("image", "container"),  # images, and containers (the container module's)
    "image": ("image", "build"),
    "build": ("build",),
    **{c: ("container",) for c in ("attach", "create", "exec", "export", "kill", "logs",
                                   "pause", "ps", "restart", "rm", "run", "start", "stop",
                                   "unpause", "wait")},
    "container": ("container", "system"),
    **{c: ("registry_client",) for c in ("login", "logout", "pull", "push")},
    "registry": ("registry",), "volume": ("volume",), "network": ("network",),
    "cri": ("cri",),
    **{c: ("system",) for c in ("commit", "cp", "info", "port", "rename", "stats", "top",
                                "version")},
}
_GLOBAL_WITH_VALUE = ("--root", "--storage-driver", "--runtime")
#: the command being parsed, when known (modules may then skip parsers it cannot reach)
COMMAND_WORD: str | None = None


def command_word(argv: list[str]) -> str | None:
    """The first word after the global options (None if there is none)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given `argv`, only the modules its command needs are imported and
    registered (most of `corral`'s start-up time was building every subcommand)."""
    import importlib

    parser = _Parser(prog="corral", description="Corral: images and containers.")
    parser.add_argument("--root", help="store directory (default $CORRAL_ROOT or /var/lib/corral)")
    parser.add_argument("--storage-driver", choices=("overlay", "vfs"),
                        help="storage driver (default: the store's, else overlay if it works)")
    parser.add_argument("--runtime", help="OCI runtime binary (default corral-runtime)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    global COMMAND_WORD
    word = command_word(argv) if argv is not None else None
    COMMAND_WORD = word if word in OWNERS else None
    needed = OWNERS.get(word or "", MODULES)
    for name in MODULES:
        if name in needed:
            importlib.import_module(f"corral.cli.{name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    from corral.cli import prelaunch

    prelaunch.begin(argv)  # `run`: its monitor starts now, while the rest starts up
    try:
        return _main(argv)
    finally:
        prelaunch.abandon()  # unless the engine adopted it


def _main(argv: list[str]) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    ctx: Any = None
    try:
        ctx = Context(args)
        collect_garbage_from_now()  # the launcher imported with it off (corral.quick_exit)
        code = args.func(args, ctx)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the edge: one line, never a traceback
        if args.debug:
            import traceback

            traceback.print_exc()
        errors.report(exc)
        return errors.exit_code(exc, getattr(args, "codes", None))
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    from corral.quick_exit import run

    run(main)
