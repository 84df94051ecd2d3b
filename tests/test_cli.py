"""The command line as a user meets it: help, wrong flags, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamfuse.cli import build_parser, main


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    names = commands()
    assert {"demo", "gateway", "simulate"} <= set(names)
    for name in [*names, None]:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"] if name else ["--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: streamfuse") and (name is None or name in text)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--nope"], "unrecognized arguments: --nope"),
        (["demo", "--devices", "zero"], "expected a positive number"),
        (["demo", "--duration", "-1"], "expected a positive number"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_wrong_usage_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "gateway", "--broker", "http://x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "streamfuse: error:" in done.stderr and "http://x" in done.stderr
