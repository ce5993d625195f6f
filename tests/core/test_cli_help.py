"""Every ``nightjar`` command explains each of its arguments and shows an example (issue 19, item 16)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from nightjar.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every sub-command at every level, as ("nightjar filter add", its parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from _commands(sub, f"{path} {name}")


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    return [("nightjar", parser), *_commands(parser, "nightjar")]


def test_every_argument_has_help() -> None:
    missing = [
        f"{path}: {action.option_strings or action.dest}"
        for path, parser in _parsers()
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and not (action.help and action.help.strip())
    ]
    assert not missing, f"arguments without help: {missing}"


def test_every_command_has_an_example() -> None:
    commands = list(_commands(build_parser(), "nightjar"))
    assert len(commands) > 40  # groups (filter, bench, lake, ...) and their sub-commands
    without = [path for path, parser in commands if "nightjar " not in (parser.epilog or "")]
    assert not without, f"commands without an example in their epilog: {without}"


def test_help_renders_every_command() -> None:
    """Each help text formats (a stray % in a help string fails only when it is shown)."""
    for path, parser in _parsers():
        text = parser.format_help()
        assert "example" in text, path


def test_run_help_explains_topic(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # undo the formatter's line wrapping
    assert "--topic TOPIC the Kafka topic (created if missing)" in out
    assert "consumer group NIGHTJAR_CONSUMER_GROUP" in out
    assert "example" in out and "nightjar run --topic alerts --idle-exit 30" in out


def test_owner_help_no_longer_waits_for_accounts() -> None:
    add = dict(_parsers())["nightjar filter add"]
    owner = next(a for a in add._actions if a.dest == "owner")
    assert owner.help is not None and "until accounts exist" not in owner.help
    assert "nightjar user add" in owner.help


def test_a_command_imports_no_benchmark_it_does_not_run() -> None:
    """The benchmarks' modules (Dask, the simulator, the API app...) took ~5 s of every command's start: a command
    line imports only the benchmark it names, and its arguments are there."""
    code = (
        "import sys; from nightjar.cli import build_parser\n"
        "build_parser(['query', 'SELECT 1'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('nightjar.bench.')))\n"
        "args = build_parser(['bench', 'objects', '--sizes', '10']).parse_args(['bench', 'objects', '--sizes', '10'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('nightjar.bench.')), args.sizes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "['nightjar.bench.objects'] 10"]
