"""The live web view's model and server (the browser test is test_webview_browser.py)."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import pickle
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import orjson
import pytest

from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.errors import ConfigError
from streamfuse.gateway.viewmodel import ViewLimits, ViewModel, as_text
from streamfuse.gateway.webview import STATIC, WebView, parse_address
from streamfuse.types import Prediction
from tests.naive_webview import naive_heat, naive_min_max, naive_stitch
from tests.streams import device_messages

REPO = Path(__file__).resolve().parents[1]


def _messages(devices=("a", "b"), seconds=24.0):
    msgs = []
    for i, d in enumerate(devices):
        msgs.extend(device_messages(d, seconds, seed=i))
    msgs.sort(key=lambda m: m[1])
    return msgs


def _feed(engine: Engine, view: ViewModel, msgs) -> list[Prediction]:
    preds = []
    for msg, now in msgs:
        for out in engine.push(msg, now):
            if isinstance(out, Prediction):
                preds.append(out)
                view.on_prediction(out)
    return preds


def _engine() -> Engine:
    return Engine(EngineConfig(model="logreg"), timer=lambda: 0.0)


def test_without_a_browser_nothing_is_kept_and_no_window_is_observed() -> None:
    engine = _engine()
    view = ViewModel(engine)
    preds = _feed(engine, view, _messages(seconds=8.0))
    assert preds and engine.on_window is None
    assert not view._watched and not view._latencies
    client = view.connect("a")
    assert engine.on_window == view.on_window
    _feed(engine, view, _messages(seconds=12.0)[len(_messages(seconds=8.0)) :])
    assert view._watched["a"].predictions and view._watched["a"].windows
    view.disconnect(client)
    assert engine.on_window is None
    assert not view._watched and not view._latencies and not view.clients


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_frames_carry_what_changed_and_nothing_twice() -> None:
    engine = _engine()
    clock = _Clock()
    view = ViewModel(engine, clock=clock)
    client = view.connect(None)  # no device named: the first one there is
    first = as_text(view.frame(client))
    assert first is not None and first["devices"] == [] and client.device is None
    msgs = _messages()
    half = len(msgs) // 2
    early = _feed(engine, view, msgs[:half])
    clock.t += 2.0
    frame = as_text(view.frame(client))
    assert frame is not None and frame["devices"] == ["a", "b"] and frame["device"] == "a"
    assert "signals" not in frame and "timeline" not in frame  # watched from now on
    assert view.frame(client) is None  # nothing changed
    _feed(engine, view, msgs[half : half + 400])
    frame = as_text(view.frame(client))
    assert frame is not None
    assert set(frame) == {"signals", "heatmap", "timeline", "latest"}
    assert frame["latest"]["device"] == "a"
    assert min(frame["timeline"]["t"]) > max(p.t_end for p in early if p.device == "a")
    assert view.frame(client) is None
    before = len(frame["timeline"]["t"])
    _feed(engine, view, msgs[half + 400 :])
    clock.t += 2.0
    later = as_text(view.frame(client))
    assert later is not None and len(later["timeline"]["t"]) > before
    assert "gateway" in later and later["gateway"]["devices"] == 2
    assert later["gateway"]["predictions"] == engine.counters["predictions"]
    assert "devices" not in later


def test_signals_are_min_max_of_the_stitched_aligned_windows() -> None:
    engine = _engine()
    limits = ViewLimits(signal_s=4.0, buckets_per_s=16.0)
    view = ViewModel(engine, limits=limits)
    client = view.connect("a")
    _feed(engine, view, _messages(seconds=20.0))
    frame = as_text(view.frame(client))
    assert frame is not None
    signals = frame["signals"]
    windows = view._watched["a"].windows
    fs, samples = naive_stitch(list(windows), limits.signal_s)
    bucket = int(fs // limits.buckets_per_s)
    channels = windows[-1].channels
    col = 0
    for modality in signals["modalities"]:
        for name, y in zip(modality["channels"], modality["y"], strict=True):
            assert channels[col] == f"{modality['name']}:{name}"
            expected = naive_min_max([row[col] for _, row in samples], bucket)
            assert len(y) == len(expected)
            for got, want in zip(y, expected, strict=True):
                if want is None:
                    assert got is None
                else:
                    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)
            col += 1
    assert col == len(channels)
    # the time axis: the last point pair ends where the last window ends
    n = len(signals["modalities"][0]["y"][0])
    assert signals["t0"] + n * signals["dt"] == pytest.approx(windows[-1].window.t_end, abs=1e-6)
    assert signals["t_end"] == pytest.approx(windows[-1].window.t_end, abs=1e-6)
    # the points are on the windows' own grid, and cover the last signal_s seconds
    kept = (round(limits.signal_s * fs) // bucket) * bucket
    assert signals["t0"] == pytest.approx(windows[-1].window.t_end - kept / fs, abs=1e-6)


def test_the_heatmap_is_the_last_fused_window_z_scored_per_channel() -> None:
    engine = _engine()
    limits = ViewLimits(heat_columns=50)
    view = ViewModel(engine, limits=limits)
    client = view.connect("b")
    msgs = _messages(seconds=10.0)
    # a hole in b's ECG: its columns must show no data there
    msgs = [m for m in msgs if not (m[0].topic.endswith("/b/ecg") and 1006.0 < m[1] < 1008.5)]
    _feed(engine, view, msgs)
    heat = as_text(view.frame(client))["heatmap"]
    fused = view._watched["b"].windows[-1]
    assert heat["channels"] == list(fused.channels)
    assert heat["index"] == fused.window.index
    saw_none = False
    for c, row in enumerate(heat["z"]):
        pairs = zip(fused.matrix[:, c], fused.mask[:, c], strict=True)
        values = [float(v) if m else None for v, m in pairs]
        want = naive_heat(values, limits.heat_columns)
        assert len(row) == len(want)
        for got, exp in zip(row, want, strict=True):
            assert (got is None) == (exp is None)
            if exp is not None:
                assert abs(got - exp) <= 1  # float32 vs float64 sums may round apart
        saw_none |= any(v is None for v in row)
    assert all(0 <= v <= 255 for row in heat["z"] for v in row if v is not None)
    assert set(heat["quality"]) == set(fused.window.quality)
    windows_with_gap = [w for w in view._watched["b"].windows if not w.mask.all()]
    assert windows_with_gap, "the ECG hole should have left masked samples in some window"
    assert saw_none == (not fused.mask.all())


def test_ground_truth_is_the_engines_own_matching_of_labels_to_windows() -> None:
    engine = _engine()
    view = ViewModel(engine)
    client = view.connect("a")
    _feed(engine, view, _messages(seconds=30.0))
    timeline = as_text(view.frame(client))["timeline"]
    scored = {idx: y for dev, idx, y in engine.outcomes if dev == "a"}
    truths = [t for t in timeline["truth"] if t is not None]
    assert len(truths) >= 10
    for idx, truth in zip(timeline["index"], timeline["truth"], strict=True):
        assert truth == scored.get(idx)
    # the published label and each level's probabilities are the predictions'
    preds = list(view._watched["a"].predictions)
    assert timeline["label"] == [p.label for p in preds]
    assert timeline["published"] == [p.level for p in preds]
    for level in timeline["levels"]:
        for cls in timeline["classes"]:
            got = timeline["proba"][level][cls]
            want = [p.levels.get(level, {}).get(cls) for p in preds]
            for g, w in zip(got, want, strict=True):
                assert (g is None) == (w is None) and (w is None or abs(g - w) < 1e-4)


def test_ground_truth_read_frame_by_frame_equals_the_engines_matching() -> None:
    """Frames taken while labels arrive read only the outcomes added since the last frame;
    across an engine replaced mid-run (a restored checkpoint) they read all of them again."""

    class Host:
        engine: Engine

    host = Host()
    host.engine = _engine()
    view = ViewModel(lambda: host)
    client = view.connect("a")
    msgs = _messages(seconds=30.0)
    timeline = None
    for k in range(0, len(msgs), 50):  # a frame every 50 messages
        if k == len(msgs) // 2:
            host.engine = pickle.loads(pickle.dumps(host.engine))  # restored: same outcomes
            host.engine.counters["learned"] = 0  # ... and a counter that went back
        _feed(host.engine, view, msgs[k : k + 50])
        frame = as_text(view.frame(client))
        timeline = (frame or {}).get("timeline", timeline)
    assert timeline is not None
    scored = {idx: y for dev, idx, y in host.engine.outcomes if dev == "a"}
    assert sum(t is not None for t in timeline["truth"]) >= 10
    assert timeline["truth"] == [scored.get(idx) for idx in timeline["index"]]


def test_everything_kept_is_bounded() -> None:
    engine = _engine()
    limits = ViewLimits(signal_s=3.0, predictions_kept=5, latencies_kept=7, max_watched=2)
    view = ViewModel(engine, limits=limits)
    clients = [view.connect(d) for d in ("a", "b", "c")]
    assert clients[2].device in ("a", "b")  # full: shares one already watched
    assert set(view._watched) == {"a", "b"}
    engine._timer = lambda: 0.0
    _feed(engine, view, _messages(devices=("a", "b", "c"), seconds=20.0))
    for watched in view._watched.values():
        assert len(watched.predictions) == 5
        span = watched.windows[-1].window.t_end - watched.windows[0].window.t_start
        assert span <= limits.signal_s + engine.config.window_s + 1e-9
    assert len(view._latencies) == 7
    assert view._latencies.percentiles()["total"]["n"] == 7
    for c in clients:
        view.disconnect(c)
    assert not view._watched


def test_a_restored_engine_gets_the_observer_and_checkpoints_never_carry_it() -> None:
    engine = Engine(EngineConfig(model="logreg"))
    engine.on_window = lambda fused: None  # unpicklable, like any bound observer may be
    clone = pickle.loads(pickle.dumps(engine))
    assert clone.on_window is None and "on_window" not in clone.__dict__

    class Host:
        pass

    host = Host()
    host.engine = _engine()  # type: ignore[attr-defined]
    view = ViewModel(lambda: host)
    client = view.connect("a")
    assert host.engine.on_window == view.on_window  # type: ignore[attr-defined]
    old = host.engine  # type: ignore[attr-defined]
    host.engine = clone  # type: ignore[attr-defined]  # what a checkpoint restore does
    view.frame(client)
    assert clone.on_window == view.on_window and old.on_window is None
    view.disconnect(client)
    assert clone.on_window is None


def test_import_streamfuse_loads_no_web_or_browser_library() -> None:
    code = (
        "import sys, streamfuse, streamfuse.engine, streamfuse.gateway.viewmodel; "
        "print(sorted(m for m in ('aiohttp', 'playwright', 'yarl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        (":9000", ("127.0.0.1", 9000)),
        ("9001", ("127.0.0.1", 9001)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:8765", ("::1", 8765)),
        ("localhost", ("localhost", 8765)),
    ],
)
def test_ui_addresses_parse(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["host:port", "127.0.0.1:70000", "[::1]:x", ":-1"])
def test_bad_ui_addresses_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_address(text)


def test_every_asset_is_local_and_shipped_as_package_data() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["streamfuse.gateway"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert "static/index.html" in files and "static/vendor/uPlot.iife.min.js" in files
    for f in files:
        if f.endswith(".md"):
            continue  # the vendoring note is for developers
        assert any(fnmatch.fnmatch(f, p) for p in patterns), f"{f} would not be in the wheel"
    page = (STATIC / "index.html").read_text()
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert not re.match(r"^[a-z]+://|^//", url), f"{url}: every asset must be local"
        if url.startswith("static/"):
            assert (STATIC.parent / url).is_file(), url
    for js in STATIC.glob("*.js"):
        assert "http://" not in js.read_text() and "https://" not in js.read_text()


# ---------------------------------------------------------------------- the HTTP server
async def _read_events(
    response: aiohttp.ClientResponse, until, timeout: float = 10.0, *, must: bool = True
):
    """Server-sent event frames read from ``response`` until ``until(frames)`` holds (or, with
    ``must`` false, until ``timeout``)."""
    frames: list[dict] = []
    buffer = b""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not until(frames):
                chunk = await response.content.readany()
                if not chunk:
                    break
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    for line in event.split(b"\n"):
                        if line.startswith(b"data: "):
                            frames.append(orjson.loads(line[6:]))
    if must and not until(frames):
        raise AssertionError(f"the stream ended or timed out after {len(frames)} frames")
    return frames


def test_the_server_streams_frames_and_refuses_what_it_should() -> None:
    async def scenario() -> None:
        engine = _engine()
        msgs = _messages(seconds=12.0)
        view = WebView(engine, port=0, rate_hz=20.0, max_clients=1)
        url = await view.start()
        assert url.startswith("http://127.0.0.1:")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(url) as r:
                    assert r.status == 200 and "streamfuse" in await r.text()
                    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
                async with http.get(url + "static/vendor/uPlot.iife.min.js") as r:
                    assert r.status == 200 and len(await r.read()) > 10_000
                for bad in ("static/../webview.py", "static/%2e%2e/webview.py", "nothing"):
                    async with http.get(url + bad) as r:
                        assert r.status in (403, 404), bad
                async with http.get(url, headers={"Host": "evil.example:80"}) as r:
                    assert r.status == 403 and "localhost" in await r.text()
                async with http.get(url + "events", params={"device": "x" * 300}) as r:
                    assert r.status == 400
                async with http.get(url + "events", params={"device": "a"}) as stream:
                    assert stream.headers["Content-Type"].startswith("text/event-stream")
                    async with http.get(url + "events") as second:
                        assert second.status == 503  # max_clients=1
                    assert engine.on_window is not None
                    for now_msgs in (msgs[: len(msgs) // 2], msgs[len(msgs) // 2 :]):
                        for msg, now in now_msgs:
                            for out in engine.push(msg, now):
                                if isinstance(out, Prediction):
                                    view.on_prediction(out)
                        await asyncio.sleep(0.2)
                    frames = await _read_events(
                        stream,
                        lambda fs: any("timeline" in f for f in fs)
                        and any(f.get("devices") for f in fs),
                    )
                    assert frames[0]["devices"] == []  # connected before any device existed
                    assert [f["devices"] for f in frames if "devices" in f][-1] == ["a", "b"]
                    assert any(f.get("device") == "a" for f in frames)
                    assert any("signals" in f for f in frames)
                    assert any("timeline" in f for f in frames)
                await asyncio.sleep(0.3)  # the server notices the stream closed
                assert not view.model.clients and engine.on_window is None
                # stop() ends open streams at once
                async with http.get(url + "events", params={"device": "b"}) as stream:
                    await _read_events(stream, lambda fs: len(fs) >= 1)
                    t0 = asyncio.get_running_loop().time()
                    await view.stop()
                    assert await stream.content.read() is not None
                    assert asyncio.get_running_loop().time() - t0 < 3.0
                assert not view.model.clients
        finally:
            await view.stop()

    asyncio.run(scenario())


def test_frames_are_coalesced_to_the_rate_whatever_the_engine_does() -> None:
    """However many predictions arrive, a browser gets at most one frame per 1/rate_hz (the
    stream sleeps a full period after each frame: a count bound, not a timing threshold)."""

    async def scenario() -> None:
        engine = _engine()
        msgs = _messages(seconds=20.0)
        view = WebView(engine, port=0, rate_hz=5.0)
        url = await view.start()
        try:
            async with aiohttp.ClientSession() as http:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                async with http.get(url + "events", params={"device": "a"}) as stream:
                    for i, (msg, now) in enumerate(msgs):  # every prediction as fast as we can
                        for out in engine.push(msg, now):
                            if isinstance(out, Prediction):
                                view.on_prediction(out)
                        if i % 50 == 0:
                            await asyncio.sleep(0)
                    await asyncio.sleep(1.0)
                    frames = await _read_events(stream, lambda fs: False, timeout=0.5, must=False)
                elapsed = loop.time() - t0
                assert engine.counters["predictions"] > 30
                assert 1 <= len(frames) <= elapsed * 5.0 + 1
        finally:
            await view.stop()

    asyncio.run(scenario())


def test_a_busy_port_is_a_clear_error() -> None:
    async def scenario() -> None:
        first = WebView(_engine(), port=0)
        await first.start()
        try:
            second = WebView(_engine(), port=first.port)
            with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
                await second.start()
        finally:
            await first.stop()

    asyncio.run(scenario())


def test_a_vanished_device_or_an_unknown_name_still_gives_valid_frames() -> None:
    engine = _engine()
    clock = _Clock()
    view = ViewModel(engine, clock=clock)
    client = view.connect("a")
    _feed(engine, view, _messages(devices=("a",), seconds=10.0))
    assert "signals" in (as_text(view.frame(client)) or {})
    engine.evict_idle(1e12, 1.0)  # every device gone
    clock.t += 2.0
    frame = as_text(view.frame(client))
    assert frame is not None and frame["devices"] == [] and frame["gateway"]["devices"] == 0
    # a name no device has is watched (it may appear later) and shows nothing meanwhile
    other = view.connect("nobody")
    frame = as_text(view.frame(other))
    assert frame is not None and frame["device"] == "nobody"
    assert not {"signals", "heatmap", "timeline", "latest"} & set(frame)
    view.disconnect(other)
    view.disconnect(client)
    assert not view._watched


# ---------------------------------------------------------------------- the gateway's --ui
def test_the_gateway_serves_the_view_only_when_asked(broker_url: str, topic_prefix: str) -> None:
    base = [sys.executable, "-m", "streamfuse.cli", "gateway", "--broker", broker_url,
            "--prefix", topic_prefix, "--duration", "6"]
    gw = subprocess.Popen(base + ["--ui", "127.0.0.1:0"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        assert gw.stdout is not None
        line = gw.stdout.readline()
        found = re.search(r"live view on (http://127\.0\.0\.1:\d+/)", line)
        assert found, line

        async def look(url: str) -> dict:
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "events") as stream:
                    frames = await _read_events(
                        stream, lambda fs: any("gateway" in f for f in fs), timeout=60.0
                    )
            return next(f["gateway"] for f in frames if "gateway" in f)

        figures = asyncio.run(look(found.group(1)))
        assert figures["queue_limit"] > 0 and figures["devices"] == 0
        out, _ = gw.communicate(timeout=60)
        assert gw.returncode == 0, out
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait()
    # off by default: nothing said about a view, nothing served
    plain = subprocess.run(base[:-1] + ["1"], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and "live view" not in plain.stdout + plain.stderr


def test_a_bad_ui_address_is_refused_before_anything_starts(topic_prefix: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "gateway", "--broker", "mqtt://127.0.0.1:1",
         "--prefix", topic_prefix, "--ui", "nowhere:port"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2  # a configuration error, as every command exits
    assert "streamfuse: error:" in done.stderr and "HOST:PORT" in done.stderr
