"""A live gateway session, recorded with ``streamfuse record`` and replayed with
``streamfuse replay --config`` of the gateway's own TOML, against what the gateway published.

Three processes on the test broker, as a user would run them: the recorder (everything under
the prefix, the gateway's predictions included), ``streamfuse gateway --config gw.toml`` and
``streamfuse simulate``. The recording is then replayed offline with the same file, and each
prediction the gateway published is compared field by field with the replay's prediction of
the same (device, window index).

The rules (``docs/replay.md``) the comparison states, checks and counts:

1. ``latency_ms`` and ``closed_at`` are readings of a clock (the gateway's per-stage timer and
   its clock at the window's close); replay runs without a timer on recorded arrivals. Not
   compared.
2. Which windows exist and their bounds do not depend on when a message was stamped or when
   a label was learned: ``device``, ``index``, ``t_start``, ``t_end``, ``model`` and
   ``modalities`` are equal in every window both made, and every window the gateway published
   is made by the replay (windows the replay alone makes come after the gateway's last).
3. Model outputs (``label``, ``level``, ``proba``, ``levels``, ``modality_proba``,
   ``metrics``, ``rules``) are equal in every window published before the first label reached
   the recorder: the same level published (the gateway's default, ``selected``), the same
   untrained models, the same features. From the first label on they may differ, and the
   differing ones are counted: the recorder stamps each message a fraction of a millisecond
   from the gateway's reading of it, the engine takes that stamp as the arrival its clock
   model maps device time with, and online learning carries the tiny feature differences into
   every later prediction (arrivals jittered by 0.5 ms offline give the same count).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from streamfuse.replay.mcap_io import read_session

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EXACT = ("device", "index", "t_start", "t_end", "model", "modalities")
CLOCK_READINGS = ("latency_ms", "closed_at")
#: the window on the device clock, mapped by the clock model as it stood when the window closed
#: (live, a timer tick may close it before a chunk that replay has already fed to the model)
DEVICE_TIMES = ("device_t_start", "device_t_end")
MODEL_OUTPUTS = ("label", "level", "proba", "levels", "modality_proba", "metrics", "rules",
                 "prediction_set", "explanation", "interval")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamfuse.cli", "--log-level", "INFO", *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_line(stream: IO[str] | None, needle: str, timeout: float) -> None:
    assert stream is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} not logged; got:\n{''.join(seen[-20:])}")


def _stop(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if proc.stderr is None or proc.stderr.closed:
        return ""
    text = proc.stderr.read()
    proc.stderr.close()
    return text


def compare(
    live: dict[tuple[str, int], tuple[dict, float]],
    replayed: dict[tuple[str, int], dict],
    first_label: float,
) -> dict[str, int]:
    """Check rules 2 and 3 (see the module's note); count windows by rule."""
    counts = {"live": len(live), "replayed": len(replayed), "before_first_label": 0,
              "after_first_label_identical": 0, "after_first_label_differ": 0,
              "replay_only": 0}
    for key, (pred, published) in live.items():
        other = replayed.get(key)
        assert other is not None, f"the gateway published {key} but replay did not make it"
        assert set(pred) == set(other) == {
            *EXACT, *CLOCK_READINGS, *DEVICE_TIMES, *MODEL_OUTPUTS
        }
        for field in EXACT:  # rule 2
            assert pred[field] == other[field], (key, field, pred[field], other[field])
        for field in DEVICE_TIMES:
            assert abs(pred[field] - other[field]) < 0.05, (key, field, pred[field], other[field])
        same = all(pred[f] == other[f] for f in MODEL_OUTPUTS)
        if published < first_label:  # rule 3: nothing learnt yet on either side
            assert same, (key, {f: (pred[f], other[f]) for f in MODEL_OUTPUTS})
            counts["before_first_label"] += 1
        else:
            counts["after_first_label_identical" if same else "after_first_label_differ"] += 1
    last_live = max((p["t_end"] for p, _ in live.values()), default=float("-inf"))
    for key, other in replayed.items():
        if key not in live:  # rule 2: only after the last window the gateway published
            assert other["t_start"] > last_live - 2.0 + 1e-9, (key, other["t_start"], last_live)
            counts["replay_only"] += 1
    return counts


def test_replay_with_the_gateway_config_reproduces_the_gateway(
    broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    toml = tmp_path / "gw.toml"
    toml.write_text(
        "[mqtt]\n"
        f'broker = "{broker_url}"\n'
        f'prefix = "{topic_prefix}"\n'
        'client_id = ""\n'
        "[engine]\n"
        'model = "logreg"\n',
        encoding="utf-8",
    )
    session = tmp_path / "live.mcap"
    recorder = _spawn("record", "--broker", broker_url, "--prefix", topic_prefix,
                      "--out", str(session), "--flush-s", "0.2")  # fmt: skip
    gateway = None
    try:
        _wait_for_line(recorder.stderr, "recording", 60)
        gateway = _spawn("gateway", "--config", str(toml))
        _wait_for_line(gateway.stderr, "gateway connected", 120)
        sim = subprocess.run(
            [sys.executable, "-m", "streamfuse.cli", "simulate", "--broker", broker_url,
             "--prefix", topic_prefix, "--devices", "3", "--duration", "12", "--seed", "5"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stderr
        time.sleep(2.0)  # the last windows' lateness budget, and their predictions' trip
        gw_log = _stop(gateway)
        assert gateway.returncode == 0, gw_log[-2000:]
        time.sleep(0.5)  # the drain's last predictions reach the recorder
    finally:
        if gateway is not None:
            _stop(gateway)
        _stop(recorder)
    assert recorder.returncode == 0

    live: dict[tuple[str, int], tuple[dict, float]] = {}
    labels = []
    for m in read_session(session):
        kind = m.message.topic.rpartition("/")[2]
        if kind == "prediction":
            p = json.loads(m.message.payload)
            live[(p["device"], p["index"])] = (p, m.arrival)
        elif kind == "label":
            labels.append(m.arrival)
    out = tmp_path / "replay.jsonl"
    rp = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "replay", str(session), "--config", str(toml),
         "--out", str(out), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rp.returncode == 0, rp.stderr
    replayed = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        p = json.loads(line)
        replayed[(p["device"], p["index"])] = p

    counts = compare(live, replayed, min(labels))
    print("live vs replay:", counts)
    assert len(live) >= 3 * 8  # three devices, 12 s of 2 s windows every 1 s
    assert counts["before_first_label"] >= 1
    assert any(p["proba"] for p, _ in live.values())  # the models learnt during the run


def test_replay_of_the_gateway_journal_matches_every_window(
    broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """The journal twin of the test above: the gateway's own journal (its arrivals, its order,
    its timer ticks) replayed with the same TOML gives every published prediction, model
    outputs after the first label included, field for field but ``latency_ms``."""
    toml = tmp_path / "gw.toml"
    ckpt = tmp_path / "ckpt"
    toml.write_text(
        "[mqtt]\n"
        f'broker = "{broker_url}"\n'
        f'prefix = "{topic_prefix}"\n'
        'client_id = ""\n'
        "[engine]\n"
        'model = "logreg"\n'
        f'[checkpoint]\ndir = "{ckpt}"\n'
        "[journal]\nprune = false\n",
        encoding="utf-8",
    )
    session = tmp_path / "live.mcap"
    recorder = _spawn("record", "--broker", broker_url, "--prefix", topic_prefix,
                      "--out", str(session), "--flush-s", "0.2")  # fmt: skip
    gateway = None
    try:
        _wait_for_line(recorder.stderr, "recording", 60)
        gateway = _spawn("gateway", "--config", str(toml))
        _wait_for_line(gateway.stderr, "gateway connected", 120)
        sim = subprocess.run(
            [sys.executable, "-m", "streamfuse.cli", "simulate", "--broker", broker_url,
             "--prefix", topic_prefix, "--devices", "3", "--duration", "12", "--seed", "5"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stderr
        time.sleep(2.0)
        gw_log = _stop(gateway)
        assert gateway.returncode == 0, gw_log[-2000:]
        time.sleep(0.5)
    finally:
        if gateway is not None:
            _stop(gateway)
        _stop(recorder)

    live: dict[tuple[str, int], dict] = {}
    labels = []
    for m in read_session(session):
        kind = m.message.topic.rpartition("/")[2]
        if kind == "prediction":
            p = json.loads(m.message.payload)
            assert (p["device"], p["index"]) not in live  # published once
            live[(p["device"], p["index"])] = p
        elif kind == "label":
            labels.append(m.arrival)
    out = tmp_path / "replay.jsonl"
    rp = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "replay", str(ckpt / "journal"), "--config",
         str(toml), "--out", str(out), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rp.returncode == 0, rp.stderr
    replayed = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        p = json.loads(line)
        replayed[(p["device"], p["index"])] = p
    after_label = 0
    for key, pred in live.items():
        other = replayed.get(key)
        assert other is not None, f"the gateway published {key} but the journal replay did not"
        differ = {f for f in pred if pred[f] != other[f]}
        assert differ <= {"latency_ms"}, {f: (pred[f], other[f]) for f in differ}
        after_label += pred["closed_at"] >= min(labels)
    assert set(replayed) == set(live)  # the gateway published every window it made
    assert len(live) >= 3 * 8 and after_label >= 3 * 4  # most after learning began
    assert any(p["proba"] for p in live.values())
    print(f"journal replay: {len(live)} of {len(live)} windows equal, {after_label} after the "
          "first label")
