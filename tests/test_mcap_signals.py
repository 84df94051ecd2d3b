"""Signal channels of a session: every data message's samples as per-sample JSON messages with
a JSON Schema (what Foxglove's Plot panel plots), beside the raw channels that replay reads.

Expected values are worked out here from the wire format (struct-unpacked frames, every k-th
sample by its running index), not with streamfuse's decoder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from mcap.reader import make_reader

from streamfuse import Chunk, ModalitySpec, codec
from streamfuse.replay.mcap_io import SessionWriter, read_session
from streamfuse.replay.signal_plot import SignalPlotter

ECG = ModalitySpec("ecg", ("ecg",), 250.0, "mV")
ACC = ModalitySpec("acc", ("x", "y", "z"), 50.0, "g")
MODS = {"ecg": ECG, "acc": ACC}


def unpack_frames(payload: bytes) -> list[tuple[str, float, float, np.ndarray]]:
    """(modality, t0, fs, samples[n, ch]) of each binary frame of a payload (wire-format.md)."""
    out, off = [], 0
    while off < len(payload):
        _, _, _, mod, ch, _, n, _, t0, fs = struct.unpack_from("<2sBB12sHHIQdd", payload, off)
        data = np.frombuffer(payload, "<f4", n * ch, off + 48).reshape(n, ch)
        out.append((mod.rstrip(b"\0").decode(), t0, fs, data))
        off += 48 + 4 * n * ch
    return out


def expected_picks(chunks: list[tuple[float, float, np.ndarray]], step: int) -> list:
    """(device_t, row) of every ``step``-th sample of a stream, counted across its chunks."""
    flat = [(t0 + i / fs, data[i]) for t0, fs, data in chunks for i in range(len(data))]
    return flat[::step]


def session(tmp_path: Path, messages, plotter) -> Path:
    path = tmp_path / "s.mcap"
    with SessionWriter(path, plotter=plotter) as w:
        for topic, payload, arrival in messages:
            w.write(topic, payload, arrival)
    return path


def read_signals(path: Path) -> dict[str, list[tuple[int, dict]]]:
    """Each signal channel's (log time, message), every message validated against the JSON
    Schema its channel names."""
    out: dict[str, list[tuple[int, dict]]] = {}
    with path.open("rb") as fh:
        for schema, channel, message in make_reader(fh).iter_messages():
            if "streamfuse.derived" not in channel.metadata:
                continue
            assert channel.topic.endswith("/signal")
            assert channel.message_encoding == "json"
            assert schema is not None and schema.encoding == "jsonschema"
            assert schema.name == "streamfuse.signal." + channel.topic.split("/")[-2]
            assert channel.metadata["streamfuse.derived"] == "signal"
            body = json.loads(message.data)
            jsonschema.Draft202012Validator(json.loads(schema.data)).validate(body)
            ts = body["timestamp"]
            assert ts["sec"] * 1_000_000_000 + ts["nsec"] == message.log_time
            out.setdefault(channel.topic, []).append((message.log_time, body))
    return out


def test_signal_channels_hold_every_kth_sample_across_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    msgs, sent = [], {"ecg": [], "acc": []}
    for seq in range(12):
        t0 = 100.0 + seq * 0.1
        arrival = 5000.0 + seq * 0.1 + 0.1 + rng.uniform(0, 0.03)  # device + delay
        ecg = Chunk("d1", "ecg", seq, t0, 250.0, rng.standard_normal((25, 1)).astype("f4"))
        acc = Chunk("d1", "acc", seq, t0, 50.0, rng.standard_normal((5, 3)).astype("f4"))
        # ECG as binary frames, ACC alternately as JSON and inside a bundle with nothing else
        msgs.append(("sf/d1/ecg", codec.encode_chunk(ecg), arrival))
        if seq % 2:
            msgs.append(("sf/d1/acc", codec.encode_chunk_json(acc), arrival))
        else:
            msgs.append(("sf/d1/bundle", codec.encode_bundle([acc]), arrival))
        sent["ecg"].append((t0, 250.0, ecg.data))
        sent["acc"].append((t0, 50.0, acc.data))
    msgs.append(("sf/d1/label", b'{"t_start": 100, "t_end": 101, "value": "rest"}', 5001.3))
    path = session(tmp_path, msgs, SignalPlotter("sf", MODS, max_hz=100.0))

    signals = read_signals(path)
    assert sorted(signals) == ["sf/d1/acc/signal", "sf/d1/ecg/signal"]
    for mod, step, names in (("ecg", 3, ("ecg",)), ("acc", 1, ("x", "y", "z"))):
        got = signals[f"sf/d1/{mod}/signal"]
        want = expected_picks(sent[mod], step)
        assert len(got) == len(want)
        for (_, body), (t_dev, row) in zip(got, want, strict=True):
            assert body["device_t"] == pytest.approx(t_dev, abs=1e-9)
            assert [body[n] for n in names] == pytest.approx(row.tolist(), rel=1e-6)
        times = [ns for ns, _ in got]
        assert times == sorted(times)
    # a sample is never placed after the arrival of the message that carried it
    last_arrival_ns = round(max(a for *_, a in msgs) * 1e9)
    assert max(ns for ch in signals.values() for ns, _ in ch) <= last_arrival_ns
    # replay reads the received messages only, unchanged
    assert [(m.message.topic, m.message.payload) for m in read_session(path)] == [
        (t, p) for t, p, _ in msgs
    ]


def test_clock_offset_follows_the_fastest_arrival_and_a_reboot() -> None:
    plotter = SignalPlotter("sf", MODS, max_hz=float("inf"))
    data = np.zeros((5, 3), "f4")

    def first_ns(t0: float, arrival: float) -> int:
        payload = codec.encode_chunk(Chunk("d", "acc", 0, t0, 50.0, data))
        return plotter.messages("sf/d/acc", payload, arrival)[0].log_time

    us = 1000  # ns: float rounding of the sums below
    # last sample at device 10.08 arrives at 1000.5: offset 990.42
    assert first_ns(10.0, 1000.5) == pytest.approx(1000.42e9, abs=us)
    # a faster chunk lowers the offset to 990.405; samples move 15 ms earlier
    assert first_ns(10.1, 1000.585) == pytest.approx(1000.505e9, abs=us)
    # a slower one keeps it
    assert first_ns(10.2, 1000.9) == pytest.approx(1000.605e9, abs=us)
    # the device clock restarts at 0 (reboot): the offset is taken from this chunk afresh
    assert first_ns(0.0, 1001.08) == pytest.approx(1001.0e9, abs=us)


def test_undecodable_and_foreign_messages_make_no_samples(tmp_path: Path) -> None:
    plotter = SignalPlotter("sf", MODS)
    good = codec.encode_chunk(Chunk("d", "ecg", 0, 0.0, 250.0, np.ones((4, 1), "f4")))
    msgs = [
        ("sf/d/ecg", b"SF junk", 10.0),  # bad frame
        ("sf/d/eeg", good, 10.0),  # modality not configured here
        ("sf/d/ecg/signal", good, 10.0),  # a raw topic spelt like a derived one
        ("other/d/ecg", good, 10.0),  # another prefix
        ("sf/d/prediction", b"{}", 10.0),
        ("sf/d/ecg", good, 10.1),
    ]
    path = session(tmp_path, msgs, plotter)
    assert sum(plotter.skipped.values()) == 2
    assert {k: len(v) for k, v in read_signals(path).items()} == {"sf/d/ecg/signal": 2}
    assert [m.message.topic for m in read_session(path)] == [t for t, _, _ in msgs]


def test_warm_up_leaves_no_trace() -> None:
    """The recorder warms the decoders before subscribing; what follows is as from a fresh one."""
    payload = codec.encode_chunk(Chunk("d", "ecg", 0, 3.0, 250.0, np.ones((9, 1), "f4")))
    warmed, fresh = SignalPlotter("sf", MODS, max_hz=100.0), SignalPlotter("sf", MODS, max_hz=100.0)
    warmed.warm_up()
    assert not warmed.skipped
    assert warmed.messages("sf/d/ecg", payload, 10.0) == fresh.messages("sf/d/ecg", payload, 10.0)


def test_the_command_lines_default_rate_is_the_plotters() -> None:
    from streamfuse.replay.commands import DEFAULT_PLOT_HZ
    from streamfuse.replay.signal_plot import DEFAULT_MAX_HZ

    assert DEFAULT_PLOT_HZ == DEFAULT_MAX_HZ
