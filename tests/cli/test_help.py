"""Every flag of every subcommand says what it does and what it defaults to (issue 18, item 8)."""

from __future__ import annotations

import argparse

import pytest

from scaleout.cli.main import COMMANDS, build_parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in p._actions
        if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    ]


def test_every_command_is_registered():
    assert set(_subcommands()) == set(COMMANDS)
    assert {"best", "cancel", "list"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_a_description_and_its_default(command):
    p = _subcommands()[command]
    for a in _flags(p):
        flag = "/".join(a.option_strings)
        assert a.help and a.help != argparse.SUPPRESS, f"{command} {flag}: no help"
        if isinstance(a, argparse._StoreTrueAction):
            continue  # off unless given
        assert "default" in a.help or "required" in a.help, f"{command} {flag}: {a.help!r}"
    for a in p._actions:
        if not a.option_strings and not isinstance(a, argparse._HelpAction):
            assert a.help, f"{command} {a.dest}: no help"


def test_help_prints_the_defaults_the_issue_named():
    subs = _subcommands()
    helps = {(c, f): a.help for c, p in subs.items() for a in _flags(p) for f in a.option_strings}
    for command, flag in [
        ("sweep", "--samples-per-gpu"),
        ("sweep", "--slurm-cpus-per-task"),
        ("sweep", "--procs-per-trial"),
        ("ui", "--port"),
        ("leaderboard", "--format"),
    ]:
        assert "default" in helps[command, flag], (command, flag)
    # Words only: argparse wraps the help at the terminal's width.
    sweep, ui = (" ".join(subs[c].format_help().split()) for c in ("sweep", "ui"))
    assert "default: 5000" in ui
    assert "plumbing" in sweep  # the tiny-preset example says what it is good for
