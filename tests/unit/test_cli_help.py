"""``idp --help`` describes every command, every subcommand and every option."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from idp import cli

pytestmark = pytest.mark.unit

# What operators and scripts rely on: these commands exist and keep their names.
STABLE_COMMANDS = {"serve", "worker", "db", "events", "admin-keys", "clients", "keys"}


def _parser() -> argparse.ArgumentParser:
    cli._load_plugins()
    return cli.build_parser()


def _walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        found.append((path, action, parser))
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.extend(_walk(child, f"{path} {name}"))
    return found


def test_every_command_and_subcommand_is_described() -> None:
    undescribed = []
    for path, action, _parser_of in _walk(_parser(), "idp"):
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest: choice.help for choice in action._choices_actions}
            undescribed += [f"{path} {name}" for name in action.choices if not described.get(name)]
    assert undescribed == []


def test_every_option_and_argument_is_described() -> None:
    undescribed = [
        f"{path} {action.option_strings or action.dest}"
        for path, action, _parser_of in _walk(_parser(), "idp")
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and not action.help
        and action.help != argparse.SUPPRESS
    ]
    assert undescribed == []


def test_the_top_level_help_lists_every_command_with_its_description() -> None:
    result = subprocess.run(  # noqa: S603 - the project's own interpreter
        [sys.executable, "-m", "idp.cli", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert STABLE_COMMANDS <= set(commands.choices)
    described = {choice.dest: choice.help or "" for choice in commands._choices_actions}
    for name in commands.choices:
        line = next((line for line in result.stdout.splitlines() if line.strip().startswith(name + " ")), "")
        assert described.get(name) and described[name].split()[0] in line, (name, result.stdout)
