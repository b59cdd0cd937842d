"""Container ids (state.validate_id) and the CLI's runc-style flag parser."""

from __future__ import annotations

import pytest

from corral.errors import InvalidArgument
from corral.runtime.cli import _COMMANDS, _CREATE, _EXEC, _GLOBAL, UsageError, main, parse_flags
from corral.runtime.state import validate_id


@pytest.mark.parametrize("good", ["abc-1.2_x+y", "a", "A9", "x" * 1024, "...", "a..b", "-x"])
def test_valid_ids(good):
    assert validate_id(good) == good


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".", "..", "/abs", "a b", "a\0b",
                                 "é", "a:b", "x" * 1025, "a\nb"])
def test_invalid_ids(bad):
    with pytest.raises(InvalidArgument, match="invalid container id"):
        validate_id(bad)


# --- parse_flags -------------------------------------------------------------

def test_flag_with_separate_value():
    assert parse_flags(["--bundle", "/b", "id"], _CREATE) == ({"bundle": "/b"}, ["id"])


def test_flag_with_equals():
    assert parse_flags(["--bundle=/b", "id"], _CREATE) == ({"bundle": "/b"}, ["id"])


def test_equals_value_may_hold_equals():
    flags, _ = parse_flags(["--env=A=B=C", "id"], _EXEC)
    assert flags == {"env": ["A=B=C"]}


def test_single_dash_long_flag():
    assert parse_flags(["-bundle", "/b", "id"], _CREATE) == ({"bundle": "/b"}, ["id"])
    assert parse_flags(["-pid-file", "/p", "id"], _CREATE)[0] == {"pid_file": "/p"}


def test_short_alias():
    assert parse_flags(["-b", "/b", "id"], _CREATE)[0] == {"bundle": "/b"}


def test_repeatable_flag_collects_values():
    flags, positional = parse_flags(["-e", "A=1", "--env", "B=2", "--env=C=3", "id", "sh"],
                                    _EXEC)
    assert flags == {"env": ["A=1", "B=2", "C=3"]}
    assert positional == ["id", "sh"]


def test_non_repeatable_flag_last_wins():
    assert parse_flags(["--bundle", "/a", "--bundle", "/b"], _CREATE)[0] == {"bundle": "/b"}


def test_bool_flags():
    assert parse_flags(["--detach", "--tty"], _EXEC)[0] == {"detach": True, "tty": True}
    assert parse_flags(["-d", "-t"], _EXEC)[0] == {"detach": True, "tty": True}


@pytest.mark.parametrize("text,value", [("true", True), ("false", False), ("0", False),
                                        ("1", True), ("FALSE", False)])
def test_bool_flag_with_explicit_value(text, value):
    assert parse_flags([f"--tty={text}"], _EXEC)[0] == {"tty": value}


def test_bool_flag_does_not_take_the_next_argument():
    assert parse_flags(["--detach", "id"], _EXEC) == ({"detach": True}, ["id"])


def test_unknown_flag_is_an_error():
    with pytest.raises(UsageError, match="flag provided but not defined: -nope"):
        parse_flags(["--nope", "id"], _CREATE)


def test_missing_value_is_an_error():
    with pytest.raises(UsageError, match="flag needs an argument: -bundle"):
        parse_flags(["--bundle"], _CREATE)


def test_positional_stops_flag_parsing():
    flags, positional = parse_flags(["-t", "id", "sh", "-c", "--tty", "echo"], _EXEC)
    assert flags == {"tty": True}
    assert positional == ["id", "sh", "-c", "--tty", "echo"]


def test_double_dash_ends_flags():
    assert parse_flags(["--", "--bundle", "x"], _CREATE) == ({}, ["--bundle", "x"])


def test_lone_dash_is_positional():
    assert parse_flags(["-", "x"], _CREATE) == ({}, ["-", "x"])


def test_without_stop_at_positional_flags_may_follow():
    assert parse_flags(["id", "--bundle", "/b", "x"], _CREATE, stop_at_positional=False) == (
        {"bundle": "/b"}, ["id", "x"])


def test_global_flags_stop_at_the_command():
    flags, rest = parse_flags(["--root", "/r", "--debug", "state", "--root", "x"], _GLOBAL)
    assert flags == {"root": "/r", "debug": True}
    assert rest == ["state", "--root", "x"]


def test_every_command_table_is_well_formed():
    for command, table in _COMMANDS.items():
        for name, spec in table.items():
            assert len(spec) == 3, (command, name)
            takes_value, repeatable, key = spec
            assert isinstance(takes_value, bool) and isinstance(repeatable, bool)
            assert key.isidentifier(), (command, name)
            assert not repeatable or takes_value, (command, name)


# --- main: the edge turns usage errors into exit codes and messages ----------

def test_main_unknown_flag_exits_1(capsys):
    assert main(["create", "--bogus", "id"]) == 1
    assert "flag provided but not defined: -bogus" in capsys.readouterr().err


def test_main_unknown_command_exits_1(capsys):
    assert main(["frobnicate"]) == 1
    assert "unknown command" in capsys.readouterr().err


def test_main_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("corral-runtime version ")


def test_main_help(capsys):
    assert main(["--help"]) == 0
    assert "Commands:" in capsys.readouterr().out


def test_main_invalid_id_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "state", "../x"]) == 1
    err = capsys.readouterr().err
    assert "invalid container id" in err
    assert "Traceback" not in err


def test_main_state_of_missing_container(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "state", "nope"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_main_spec_writes_config(tmp_path):
    assert main(["spec", "--bundle", str(tmp_path)]) == 0
    assert (tmp_path / "config.json").is_file()
    assert main(["spec", "--bundle", str(tmp_path)]) == 1  # exists: refuse to overwrite
