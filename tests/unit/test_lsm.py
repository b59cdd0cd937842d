"""corral.linux.lsm without root: field validation, the host checks, attr writes."""

from __future__ import annotations

import pytest

from corral.errors import InvalidArgument, Unavailable
from corral.linux import lsm


@pytest.fixture
def host(monkeypatch):
    """Pretend both LSMs are enabled (each test may switch one off)."""
    monkeypatch.setattr(lsm, "apparmor_enabled", lambda: True)
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: True)
    return monkeypatch


def test_nothing_named_nothing_checked(monkeypatch):
    monkeypatch.setattr(lsm, "apparmor_enabled", lambda: pytest.fail("checked"))
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: pytest.fail("checked"))
    lsm.check({"args": ["sh"]}, {})
    assert not lsm.uses_lsm({"args": ["sh"]}, {"mountLabel": ""})


def test_valid_fields_pass_where_the_host_has_the_lsm(host):
    lsm.check({"apparmorProfile": "docker-default",
               "selinuxLabel": "system_u:system_r:container_t:s0:c1,c2"},
              {"mountLabel": "system_u:object_r:container_file_t:s0:c1,c2"})


@pytest.mark.parametrize("process, linux, field", [
    ({"apparmorProfile": "x\ny"}, {}, "process.apparmorProfile"),
    ({"apparmorProfile": " padded"}, {}, "process.apparmorProfile"),
    ({"selinuxLabel": "container_t"}, {}, "process.selinuxLabel"),
    ({}, {"mountLabel": 'a:b:c:s0",nodev'}, "linux.mountLabel"),
])
def test_malformed_fields_name_the_field(host, process, linux, field):
    with pytest.raises(InvalidArgument, match=field):
        lsm.check(process, linux)


@pytest.mark.parametrize("process, linux, field, module", [
    ({"apparmorProfile": "docker-default"}, {}, "process.apparmorProfile", "AppArmor"),
    ({"selinuxLabel": "u:r:t:s0"}, {}, "process.selinuxLabel", "SELinux"),
    ({}, {"mountLabel": "u:object_r:t:s0"}, "linux.mountLabel", "SELinux"),
])
def test_host_without_the_lsm_is_a_clear_error(host, process, linux, field, module):
    host.setattr(lsm, "apparmor_enabled", lambda: False)
    host.setattr(lsm, "selinux_enabled", lambda: False)
    with pytest.raises(Unavailable, match=f"{field}.*{module} is not enabled"):
        lsm.check(process, linux)


def test_attr_write_goes_to_the_first_existing_file(tmp_path):
    target = tmp_path / "exec"
    target.write_text("")
    lsm._write_attr((str(tmp_path / "missing"), str(target)), "exec prof", "f")
    assert target.read_text() == "exec prof"


def test_attr_write_failure_names_the_field(tmp_path):
    with pytest.raises(OSError, match="process.apparmorProfile: none of"):
        lsm._write_attr((str(tmp_path / "a"), str(tmp_path / "b")), "exec p",
                        "process.apparmorProfile")
