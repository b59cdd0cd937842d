"""The lazily built parser (only the modules a command needs) must parse every command
exactly as the full parser does: same subcommands, same handlers, same flags."""

from __future__ import annotations

import argparse

import pytest

from corral.cli import main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _shape(parser: argparse.ArgumentParser, depth: int = 0) -> dict:
    flags = sorted(o for a in parser._actions for o in a.option_strings)
    children = {name: _shape(child, depth + 1) for name, child in _subparsers(parser).items()}
    return {"func": parser._defaults.get("func"), "flags": flags, "children": children}


FULL = _shape(main.build_parser(None))


@pytest.mark.parametrize("word", sorted(FULL["children"]))
def test_lazy_parser_matches_the_full_one(word):
    lazy = _shape(main.build_parser([word, "--help"]))
    assert lazy["children"][word] == FULL["children"][word]


def test_every_command_has_an_owner():
    assert set(FULL["children"]) <= set(main.OWNERS)
