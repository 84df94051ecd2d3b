"""The gateway's [federated] section (issue 18)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from streamfuse.errors import ConfigError
from streamfuse.gateway.config import FederatedSection
from streamfuse.gateway.federation import join_federation
from streamfuse.gateway.loading import from_mapping

REPO = Path(__file__).resolve().parents[1]


def test_section_reads_from_toml_and_environment_and_is_off_by_default() -> None:
    raw = tomllib.loads((REPO / "deploy" / "gateway.toml").read_text())
    assert from_mapping(raw).federated == FederatedSection()
    cfg = from_mapping({"federated": {"federation": "clinics", "site": "c7"}},
                       env={"STREAMFUSE_FEDERATED_MIN_PARTIES": "3"})
    assert (cfg.federated.federation, cfg.federated.site, cfg.federated.min_parties) == (
        "clinics", "c7", 3)
    with pytest.raises(ConfigError, match="federated"):
        from_mapping({"federated": {"min_parties": "two"}})
    with pytest.raises(ConfigError, match="federated.rounds"):
        from_mapping({"federated": {"rounds": 3}})


def test_join_is_none_when_off_and_a_bad_site_name_is_a_config_error() -> None:
    stop = asyncio.Event()
    off = SimpleNamespace(config=from_mapping({}), engine=None)
    assert join_federation(off, stop) is None
    bad = SimpleNamespace(config=from_mapping({"federated": {"federation": "f",
                                                             "site": "a/b"}}), engine=None)
    with pytest.raises(ConfigError, match=r"\[federated\].*site"):
        join_federation(bad, stop)
