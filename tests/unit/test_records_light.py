"""corral.records_light behaves as `dataclasses` for the subset Corral uses, and is
really cheaper: the engine's start-up path does not import `dataclasses` at all."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from corral import records_light as light

SRC = Path(__file__).resolve().parents[2] / "src"


def _pair(frozen: bool):
    """The same class made by dataclasses and by records_light."""
    made = []
    for module in (dataclasses, light):
        @module.dataclass(frozen=frozen)
        class Base:
            name: str
            size: int = 0

        @module.dataclass(frozen=frozen)
        class Record(Base):
            tags: list[str] = module.field(default_factory=list)
            note: str = module.field(default="", compare=False)

        made.append((module, Record))
    return made


@pytest.mark.parametrize("frozen", [False, True])
def test_construction_repr_eq_match_dataclasses(frozen: bool) -> None:
    (dc, a), (lt, b) = _pair(frozen)
    x, y = a("n", 3, ["t"], note="x"), b("n", 3, ["t"], note="x")
    assert repr(x) == repr(y)
    assert [f.name for f in dc.fields(a)] == [f.name for f in lt.fields(b)]
    assert dc.asdict(x) == lt.asdict(y) == {"name": "n", "size": 3, "tags": ["t"], "note": "x"}
    assert b("n") == b("n", 0, [], note="ignored by eq")  # compare=False
    assert b("n") != b("m")
    assert b("n").tags is not b("n").tags  # a fresh default per instance
    changed = lt.replace(y, size=4)
    assert (changed.name, changed.size, y.size) == ("n", 4, 3)
    if frozen:
        with pytest.raises(light.FrozenInstanceError):
            y.size = 5  # type: ignore[misc]
        assert hash(b("n", 1, ())) == hash(b("n", 1, (), note="other"))  # compare=False
    else:
        y.size = 5
        assert y.size == 5
        with pytest.raises(TypeError):
            hash(y)


def test_bad_calls_are_refused_like_dataclasses() -> None:
    (_, _), (lt, b) = _pair(False)
    with pytest.raises(TypeError, match="missing required argument.*'name'"):
        b()
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        b("n", nope=1)
    with pytest.raises(TypeError, match="multiple values for argument 'name'"):
        b("n", name="m")
    with pytest.raises(TypeError, match="positional arguments"):
        b("n", 1, [], "", "extra")
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        lt.replace(b("n"), nope=1)
    with pytest.raises(ValueError, match="mutable default list"):
        @lt.dataclass
        class Bad:
            items: list = []  # noqa: RUF012
    with pytest.raises(TypeError, match="ClassVar"):
        @lt.dataclass
        class AlsoBad:
            counter: ClassVar[int] = 0  # type: ignore[name-defined] # noqa: F821
    with pytest.raises(TypeError, match="should be called on dataclass instances"):
        dataclasses.replace(b("n"), size=1)  # the stdlib refuses, it does not misbehave


def test_post_init_runs() -> None:
    @light.dataclass
    class Sized:
        items: list[int] = light.field(default_factory=list)

        def __post_init__(self) -> None:
            self.count = len(self.items)

    assert Sized([1, 2]).count == 2


def test_run_path_imports_no_dataclasses() -> None:
    """`corral run`'s modules load without dataclasses, inspect, typing or shutil (each
    costs milliseconds on every command)."""
    code = (f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
            "import corral.cli.main, corral.cli.run_options, corral.engine.engine\n"
            "import corral.storage.store, corral.engine.spec, corral.engine.networking\n"
            "corral.cli.main.build_parser(['run']).parse_args(['run', 'busybox'])\n"
            "print(' '.join(m for m in ('dataclasses', 'inspect', 'typing', 'shutil')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == ""
