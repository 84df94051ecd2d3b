"""Commands that cannot reach their broker end with one clear line, a non-zero exit code, no
traceback and no empty file left behind (issue 20, Done-when 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamfuse import EngineConfig, warm_up
from streamfuse.warmup import kernels_cached

REPO = Path(__file__).resolve().parents[1]
NOBODY = "mqtt://127.0.0.1:1"  # port 1: connection refused at once


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", *args],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


def _clean(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("streamfuse: error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]


def test_record_without_a_broker_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "session.mcap"
    done = _cli("record", "--broker", NOBODY, "--out", str(out), cwd=tmp_path)
    _clean(done, "refused the connection")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_demo_without_a_broker_says_so(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    done = _cli("demo", "--broker", NOBODY, "--no-live", "--duration", "2",
                "--json", str(summary), cwd=tmp_path)  # fmt: skip
    _clean(done, f"could not connect to {NOBODY}; is a broker running there?")
    assert "TimeoutError" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_gateway_that_never_connects_exits_non_zero(tmp_path: Path) -> None:
    checkpoints = tmp_path / "ckpt"
    done = _cli("gateway", "--broker", NOBODY, "--connect-timeout", "2",
                "--checkpoint-dir", str(checkpoints), cwd=tmp_path)  # fmt: skip
    _clean(done, f"could not connect to the broker at {NOBODY} within 2 s")
    assert "--connect-timeout" in done.stderr
    # nothing learnt, nothing saved: no checkpoint, and no empty file anywhere (the journal
    # keeps its record of the start, docs/durability.md)
    left = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in left if p.suffix == ".ckpt"], left
    assert not [p for p in left if p.stat().st_size == 0], left


def test_the_compile_notice_follows_the_cache(tmp_path: Path) -> None:
    warm_up(EngineConfig())  # whatever this machine's cache held, it holds the kernels now
    assert kernels_cached()
    empty = tmp_path / "numba"  # a cache directory with nothing in it: everything compiles
    done = subprocess.run(
        [sys.executable, "-c", "from streamfuse.warmup import kernels_cached as k; print(k())"],
        env={**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(empty)},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "False"
