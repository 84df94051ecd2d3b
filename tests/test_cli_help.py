"""``--help`` is complete: every option of every command says what it does; the model names are
listed where a model is chosen; ``--log-level`` works after the subcommand; the printed default
configuration is complete and loads back to the defaults."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streamfuse import cli
from streamfuse.gateway.config import SECTIONS, GatewayConfig
from streamfuse.gateway.loading import load
from streamfuse.learn.models import MODELS
from streamfuse.learn.names import MODEL_NAMES

PARSER = cli.build_parser()
COMMANDS = next(
    a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)
).choices


def test_the_listed_model_names_are_the_models() -> None:
    assert sorted(MODEL_NAMES) == sorted(MODELS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help(command: str) -> None:
    parser = COMMANDS[command]
    silent = [
        a.option_strings or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert silent == []
    for action in parser._actions:
        if action.dest == "model":
            assert action.choices is not None and set(action.choices) == set(MODELS)
    text = parser.format_help()
    assert "--log-level" in text


def test_gateway_help_shows_each_flag_default_and_its_config_key() -> None:
    text = " ".join(COMMANDS["gateway"].format_help().split())
    for flag, key in cli.GATEWAY_FLAGS.items():
        assert f"or {key} of --config" in text, flag
    assert "(default: 'streamfuse', or mqtt.prefix of --config)" in text
    assert "neurofuzzy" in text


def test_log_level_after_the_subcommand_wins_and_before_it_still_works() -> None:
    after = PARSER.parse_args(["gateway", "--log-level", "DEBUG"])
    before = PARSER.parse_args(["--log-level", "INFO", "gateway"])
    neither = PARSER.parse_args(["gateway"])
    assert (after.log_level, before.log_level, neither.log_level) == ("DEBUG", "INFO", "WARNING")
    with pytest.raises(SystemExit):
        PARSER.parse_args(["replay", "x.mcap", "--log-level", "LOUD"])


def test_print_config_is_complete_and_loads_back_to_the_defaults(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "gateway", "--print-config"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = tomllib.loads(done.stdout)
    for name, cls in SECTIONS.items():  # every key of every section is written out
        assert set(doc[name]) == set(cls.__dataclass_fields__), name
    assert set(doc["modalities"]) == set(GatewayConfig().modalities)
    path = tmp_path / "gateway.toml"
    path.write_text(done.stdout, encoding="utf-8")
    loaded = load(str(path))
    assert loaded.engine_config() == GatewayConfig().engine_config()
    for name in SECTIONS:
        assert getattr(loaded, name) == getattr(GatewayConfig(), name), name
    assert done.stdout.count("\n# ") > 10  # commented
