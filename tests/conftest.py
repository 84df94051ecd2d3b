"""Shared fixtures: the real-data folder, a real MQTT broker, unique topic prefixes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """Where the real recordings live: $STREAMFUSE_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("STREAMFUSE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-recordings folder; skips (or, under CI, fails) when it is absent."""
    root = data_root()
    if not root.is_dir():
        msg = (
            f"real recordings not found at {root}; set STREAMFUSE_DATA to the folder holding "
            "eegmat/, wfdb_sample_data/, ..."
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root


def need_data(root: Path, *parts: str) -> Path:
    """Path to one recording under ``root``; skip (fail under CI) when it is missing."""
    path = root.joinpath(*parts)
    if not path.exists():
        msg = f"recording {path} is missing"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"sftest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """A real MQTT broker: $STREAMFUSE_TEST_BROKER, else a private one started for the session."""
    env = os.environ.get("STREAMFUSE_TEST_BROKER")
    if env:
        yield env
        return
    from streamfuse.mqtt.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.url
