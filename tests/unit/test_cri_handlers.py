"""handlers.Handlers: the runtime handler map, detected or from the CRI config file
(no root: runtimes are fake executables in tmp_path)."""

from __future__ import annotations

import os
import stat

import pytest

pytest.importorskip("corral.cri._gen.api_pb2", reason="CRI stubs not generated")

from corral.cri.handlers import CRIConfigError, HandlerNotFound, Handlers


@pytest.fixture
def fake_runtime(tmp_path):
    def make(name: str, features: str = '{"mountOptions": ["rro", "ro"]}') -> str:
        path = tmp_path / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"#!/bin/sh\n[ \"$1\" = features ] && echo '{features}'\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    return make


def _conf(tmp_path, text: str):
    path = tmp_path / "cri.conf"
    path.write_text(text)
    return path


def test_config_file_replaces_the_detected_handlers(tmp_path, fake_runtime):
    fast, slow = fake_runtime("fast-rt"), fake_runtime("slow-rt", '{"mountOptions": []}')
    h = Handlers.from_file(_conf(tmp_path, f'default_runtime_handler = "slow"\n'
                                           f'[runtime_handlers]\nfast = "{fast}"\n'
                                           f'slow = "{slow}"\n'), None)
    assert h.as_dict() == {"fast": fast, "slow": slow, "": slow}
    assert h.get("").runtime == slow and h.get("fast").runtime == fast
    by_name = {x.name: x.features for x in h.runtime_handlers()}
    kernel = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    assert by_name["fast"].recursive_read_only_mounts == (kernel >= (5, 12))
    assert not by_name["slow"].recursive_read_only_mounts
    assert not any(f.user_namespaces for f in by_name.values())


def test_without_a_default_the_engines_runtime_is_the_default(tmp_path, fake_runtime):
    fast, engine = fake_runtime("fast-rt"), fake_runtime("engine-rt")
    h = Handlers.from_file(_conf(tmp_path, f'[runtime_handlers]\nfast = "{fast}"\n'), engine)
    assert h.as_dict() == {"fast": fast, "": engine}


def test_unknown_handler_is_not_found_naming_it_and_the_configured(tmp_path, fake_runtime):
    h = Handlers({"": fake_runtime("a"), "runc": fake_runtime("b")})
    with pytest.raises(HandlerNotFound) as info:
        h.get("corral-test-nope")
    assert "runtime_handler 'corral-test-nope'" in str(info.value)
    assert '"runc"' in str(info.value)


@pytest.mark.parametrize(("text", "words"), [
    ('colour = "blue"\n', "unknown key 'colour'"),
    ('[runtime_handlers]\nx = "/corral-test/no/such/runtime"\n', "runtime_handlers.x"),
    ('[runtime_handlers]\nx = 3\n', "runtime_handlers.x: expected a runtime name"),
    ('[runtime_handlers]\n"" = "runc"\n', "default_runtime_handler"),
    ('default_runtime_handler = "nope"\n', "default_runtime_handler 'nope'"),
    ('runtime_handlers = "runc"\n', "runtime_handlers must be a table"),
    ('[runtime_handlers\n', "cri.conf"),
])
def test_bad_config_names_the_file_and_key(tmp_path, text, words):
    path = _conf(tmp_path, text)
    with pytest.raises(CRIConfigError) as info:
        Handlers.from_file(path, None)
    assert str(path) in str(info.value) and words in str(info.value)


def test_load_prefers_the_environment_file(tmp_path, fake_runtime, monkeypatch):
    rt = fake_runtime("env-rt")
    monkeypatch.setenv("CORRAL_CRI_CONFIG", str(_conf(tmp_path, f'[runtime_handlers]\n'
                                                                f'e = "{rt}"\n')))
    assert Handlers.load(rt).as_dict() == {"e": rt, "": rt}
    monkeypatch.setenv("CORRAL_CRI_CONFIG", str(tmp_path / "missing.conf"))
    with pytest.raises(CRIConfigError, match="CORRAL_CRI_CONFIG"):
        Handlers.load(None)


def test_detect_lists_the_default_and_the_runtimes_found(fake_runtime, monkeypatch):
    engine = fake_runtime("engine-rt")
    crun = fake_runtime("crun")
    monkeypatch.setenv("PATH", os.path.dirname(crun))
    h = Handlers.detect(engine).as_dict()
    assert h[""] == engine and h["crun"] == crun
    assert "corral" in h  # corral-runtime beside the interpreter
