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


def test_the_federation_needs_no_package_beyond_the_core_ones() -> None:
    """Issue 18, done-when 5: federation is optional (off unless a [federated] section or
    'streamfuse federation' asks for it) and needs no extra: every module of
    streamfuse/federated imports only the standard library, streamfuse and core dependencies
    (see docs/federated.md, 'Installing')."""
    import ast
    import sys
    import tomllib

    core = {"numpy", "river"}  # the ones streamfuse/federated uses; both in [project] deps
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all(any(d.startswith(c) for d in deps) for c in core)
    for path in (REPO / "streamfuse" / "federated").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in core or top == "streamfuse", (
                    path.name, name)


def test_the_readme_commands_do_not_load_the_federation() -> None:
    """'streamfuse demo' (the README's first command) registers the 'federation' subcommand's
    options and nothing more: no merge, protocol, client or server module is imported."""
    import subprocess
    import sys

    code = ("import sys\nfrom streamfuse.cli import main\ntry:\n main(['demo', '--help'])\n"
            "except SystemExit:\n pass\nprint(sorted(m for m in sys.modules "
            "if m.startswith('streamfuse.federated.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    assert out == "['streamfuse.federated.commands']", out


def test_a_model_that_cannot_federate_is_a_config_error_at_start() -> None:
    """A site never sends a neuro-fuzzy rule base (its rule centres are feature vectors it
    learnt from) and cannot send a model without a merge rule: the gateway refuses the
    [federated] section at start, naming why."""
    from streamfuse.config import EngineConfig
    from streamfuse.engine import Engine

    stop = asyncio.Event()
    cfg = from_mapping({"federated": {"federation": "f", "site": "s1"}})
    for model, why in (("neurofuzzy", "neuro-fuzzy.*must not leave a site"),
                       ("softmax", "no merge rule")):
        gw = SimpleNamespace(config=cfg, engine=Engine(EngineConfig(model=model)))
        with pytest.raises(ConfigError, match=r"\[federated\].*" + why):
            join_federation(gw, stop)
