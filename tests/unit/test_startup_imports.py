"""Start-up guard for `corral-runtime` (STYLE.md, "Startup latency").

The runtime CLI is started for every create/start/state/kill/delete an engine
issues, so what it imports at start-up is paid on every call. These tests run
a fresh interpreter (the one running the tests, i.e. the venv's), import the
CLI or run a cheap verb, and list what was imported beyond what the
interpreter's own start-up (site, .pth files) already loaded:

* nothing outside the standard library (and corral itself) at CLI start-up;
* none of the BANNED modules, which are slow to import or pull in threads,
  at start-up, in `--version`/`spec`, or when a verb's module is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BANNED = frozenset({
    "argparse", "subprocess", "asyncio", "typing", "dataclasses", "logging", "socket",
    "threading", "jsonschema",
})

# Prints the modules a snippet imported, beyond the interpreter's start-up set.
_PROBE = """
import json, sys
before = set(sys.modules)
{snippet}
print(json.dumps(sorted(set(sys.modules) - before - {{"json"}})))
"""

# json is imported by the probe itself before the snapshot; whether the code
# under test needs it is not what these tests are about.


def _imported(snippet: str, cwd: str | None = None) -> list[str]:
    code = _PROBE.format(snippet=snippet)
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, cwd=cwd, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _top(name: str) -> str:
    return name.partition(".")[0]


def _non_stdlib(modules: list[str]) -> list[str]:
    return [m for m in modules
            if _top(m) not in sys.stdlib_module_names and _top(m) != "corral"]


def _banned(modules: list[str]) -> list[str]:
    return [m for m in modules if _top(m) in BANNED]


def test_cli_import_pulls_only_stdlib():
    modules = _imported("import corral.runtime.cli")
    assert _non_stdlib(modules) == [], f"non-stdlib modules at CLI start-up: {_non_stdlib(modules)}"


def test_cli_import_pulls_no_banned_module():
    modules = _imported("import corral.runtime.cli")
    assert _banned(modules) == [], f"banned modules at CLI start-up: {_banned(modules)}"


def test_interpreter_startup_has_no_banned_module():
    """site/.pth files of the venv must not drag a banned module into every call."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert _banned(json.loads(result.stdout)) == []


def test_version_pulls_no_banned_module():
    modules = _imported(
        "import contextlib, io\n"
        "from corral.runtime.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--version']) == 0\n")
    assert _banned(modules) == [], f"banned modules in --version: {_banned(modules)}"


def test_spec_pulls_no_banned_module(tmp_path):
    modules = _imported(
        "from corral.runtime.cli import main\n"
        f"assert main(['spec', '--bundle', {str(tmp_path)!r}]) == 0\n")
    assert (tmp_path / "config.json").exists()
    assert _banned(modules) == [], f"banned modules in spec: {_banned(modules)}"


# Modules never imported at run time: a Protocol for type checkers only.
TYPE_CHECKING_ONLY = frozenset({"corral.linux.cgroups.manager"})


def _runtime_modules() -> list[str]:
    """Every module corral-runtime may import: corral.runtime, corral.linux, corral.oci."""
    import corral

    base = Path(corral.__file__).parent
    names = []
    for package in ("runtime", "linux", "oci"):
        for path in sorted((base / package).rglob("*.py")):
            parts = path.relative_to(base.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name not in TYPE_CHECKING_ONLY:
                names.append(name)
    return names


def test_verb_modules_are_found():
    modules = _runtime_modules()
    assert "corral.runtime.container_create" in modules
    assert "corral.linux.mounts" in modules


@pytest.mark.parametrize("module", _runtime_modules())
def test_runtime_modules_pull_no_banned_module(module):
    """What `create`, `start`, `run`... import when they run (the verbs import lazily)."""
    modules = _imported(f"import {module}")
    assert _banned(modules) == [], f"{module} imports {_banned(modules)}"


# `re` (and the `enum` it drags in) costs several ms; json imports it. `ctypes` costs
# ~3 ms (corral.linux.libc uses its C half), `importlib` ~1 ms with `warnings`, `struct`
# half a ms. The modules on the create/start/delete path must not import any of these
# at module level.
HOT_PATH_MODULES = (
    "corral.runtime.cli", "corral.runtime.container_create", "corral.runtime.init",
    "corral.runtime.container_start", "corral.runtime.container_delete",
    "corral.runtime.container_kill", "corral.runtime.foreground", "corral.runtime.exe_guard",
    "corral.runtime.state", "corral.runtime.resources", "corral.linux.cgroups",
    "corral.linux.cgroups.validate", "corral.linux.cgroups.v1", "corral.linux.cgroups.v2",
    "corral.linux.cgroups.pids", "corral.linux.cgroups.devices", "corral.linux.syscalls",
    "corral.linux.seccomp", "corral.linux.capabilities", "corral.linux.rlimits",
    "corral.oci.runtime_config",
)
HOT_PATH_BANNED = ("re", "json", "enum", "typing", "ctypes", "importlib", "struct", "warnings",
                   "encodings.utf_8_sig")


def test_hot_path_modules_do_not_import_slow_modules():
    src = str(Path(__file__).resolve().parents[2] / "src")
    code = (f"import sys; sys.path.insert(0, {src!r}); "
            + "; ".join(f"import {name}" for name in HOT_PATH_MODULES)
            + f"; print(' '.join(m for m in {HOT_PATH_BANNED!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], check=False,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"hot-path modules import {result.stdout.split()}"


# What `create` with $CORRAL_RUNTIME_AWAIT_CONFIG imports while it waits for config.json
# (container_create.preload): the modules the create path needs whatever the config.
AWAIT_PRELOADED = ("corral.runtime.init", "corral.runtime.rootfs", "corral.runtime.process",
                   "corral.runtime.resources", "corral.linux.seccomp",
                   "corral.linux.cgroups.validate", "corral.oci.digest")


def _await_snippet(bundle: str, wait: str | None) -> str:
    env = f"os.environ['CORRAL_RUNTIME_AWAIT_CONFIG'] = {wait!r}\n" if wait else ""
    return ("import os\n" + env
            + "from corral.runtime.cli import _await_config\n"
            + "try:\n"
            + f"    _await_config({bundle!r})\n"
            + "except Exception as exc:\n"
            + "    assert 'not written within' in str(exc), exc\n")


def test_await_path_preloads_the_create_path(tmp_path):
    modules = _imported(_await_snippet(str(tmp_path), "0.05"))
    missing = [m for m in AWAIT_PRELOADED if m not in modules]
    assert missing == [], f"not preloaded while waiting: {missing}"
    assert _banned(modules) == [], f"banned modules on the await path: {_banned(modules)}"


def test_plain_create_preloads_nothing(tmp_path):
    """Without the variable (runc's callers) nothing is imported ahead of need."""
    modules = _imported(_await_snippet(str(tmp_path), None))
    assert [m for m in AWAIT_PRELOADED if m in modules] == []
    assert "select" not in modules
