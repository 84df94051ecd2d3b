"""The house rules of the package's shape (issue 14), kept true by a test: only
``streamfuse.mqtt`` talks MQTT, shells do not reach into the gateway, and modules stay small
(500 lines in the core, 400 in the shells)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "streamfuse"
SHELLS = ("gateway", "replay", "latency", "mqtt", "cluster")
MQTT_IMPORT = re.compile(r"^\s*(import|from)\s+(aiomqtt|paho)\b", re.M)
GATEWAY_IMPORT = re.compile(
    r"^\s*(from\s+(streamfuse|\.\.)\.?gateway\b|import\s+streamfuse\.gateway\b)", re.M
)


def _sources(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_only_the_mqtt_package_imports_an_mqtt_client() -> None:
    found = [
        p.relative_to(ROOT).as_posix()
        for p in _sources(PACKAGE, ROOT / "simulators")
        if MQTT_IMPORT.search(p.read_text(encoding="utf-8"))
    ]
    assert found and all(f.startswith("streamfuse/mqtt/") for f in found), found


def test_replay_latency_and_simulators_do_not_import_the_gateway() -> None:
    found = [
        p.relative_to(ROOT).as_posix()
        for p in _sources(PACKAGE / "replay", PACKAGE / "latency", ROOT / "simulators")
        if GATEWAY_IMPORT.search(p.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_modules_stay_small() -> None:
    too_long = {}
    for p in _sources(PACKAGE):
        rel = p.relative_to(PACKAGE).as_posix()
        shell = rel == "cli.py" or rel.split("/")[0] in SHELLS
        limit = 400 if shell else 500
        n = len(p.read_text(encoding="utf-8").splitlines())
        if n > limit:
            too_long[rel] = (n, limit)
    assert too_long == {}
