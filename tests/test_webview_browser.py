"""The live view in a real headless Chromium, fed by a real engine with simulated devices.

Needs the system's Chromium (Debian package ``chromium``; ``.ci/run`` installs it) and
Playwright's Python package (the ``test`` extra); Playwright's own browser download is not used.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.gateway.webview import WebView
from streamfuse.warmup import warm_up
from tests.live_feed import LiveFeed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

NO_CHROMIUM = (
    "no Chromium on PATH: install the system's (Debian: apt-get install chromium) to run the "
    "browser test; .ci/run does"
)


@pytest.fixture
def chromium() -> str:
    """The system's Chromium; skips without one (fails under CI, whose .ci/run installs it)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail(NO_CHROMIUM)
        pytest.skip(NO_CHROMIUM)
    return CHROMIUM


#: how the page reports what it drew (view.js keeps window.streamfuseView up to date)
STATS = "window.streamfuseView"
#: pixels of the heatmap canvas that differ from its background, and distinct colours
HEATMAP_PIXELS = """() => {
  const c = document.getElementById('heatmap');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] !== 11 || d[i + 1] !== 13 || d[i + 2] !== 16) painted += 1;
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  }
  return [painted, colours.size, c.width * c.height];
}"""


@pytest.mark.slow
def test_the_page_draws_live_data_and_switches_devices(tmp_path: Path, chromium: str) -> None:
    playwright = pytest.importorskip(
        "playwright.async_api", reason="Playwright is in the test extra: pip install -e '.[test]'"
    )
    config = EngineConfig()
    warm_up(config)
    engine = Engine(config, timer=time.perf_counter)

    async def scenario() -> None:
        view = WebView(engine, port=0)
        feed = LiveFeed(engine, 3, seed=5, on_prediction=view.on_prediction)
        stop = asyncio.Event()
        feeding = asyncio.create_task(feed.run(stop), name="test[webview].feed")
        url = await view.start()
        problems: list[str] = []
        try:
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on(
                    "console",
                    lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None,
                )
                await page.goto(url)
                # functions, not expressions: the page's CSP forbids eval, as it should
                ready = (
                    f"() => {STATS}.signalPoints > 0 && {STATS}.heatmaps > 0 && "
                    f"{STATS}.timelinePoints >= 2 && {STATS}.devices.length === 3"
                )
                await page.wait_for_function(ready, timeout=60_000)
                first = await page.evaluate(f"() => {STATS}")
                assert first["device"] == "dev000"  # the first device, none asked for
                # live: the timeline gains points and the signals move on
                await page.wait_for_function(
                    f"([n, t]) => {STATS}.timelinePoints > n && {STATS}.signalEnd > t",
                    arg=[first["timelinePoints"], first["signalEnd"]],
                    timeout=30_000,
                )
                assert await page.locator("#signals canvas").count() >= 3  # ecg, eeg, acc
                painted, colours, total = await page.evaluate(HEATMAP_PIXELS)
                assert painted > total // 2 and colours > 20
                assert "published" in await page.locator("#decision").inner_text()
                # metrics come with the predictions made after the first labels are learnt
                await page.locator("#metrics td").first.wait_for(timeout=60_000)
                assert "early" in await page.locator("#metrics").inner_text()
                assert "incoming" not in await page.locator("#gateway").inner_text()  # no gateway
                assert "latency total" in await page.locator("#gateway").inner_text()
                # another device: its own data replaces the first one's
                assert await page.locator("#device option").count() == 3
                await page.select_option("#device", "dev002")
                await page.wait_for_function(
                    f"() => {STATS}.device === 'dev002' && {STATS}.signalPoints > 0 && "
                    f"{STATS}.timelinePoints >= 2",
                    timeout=30_000,
                )
                assert "device=dev002" in page.url
                assert "dev002" in view.model._watched and "dev000" not in view.model._watched
                shot = tmp_path / "webview.png"
                await page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 20_000
                stats = await page.evaluate(f"() => {STATS}")
                assert stats["errors"] == 0
                await browser.close()
        finally:
            stop.set()
            await feeding
            await view.stop()
        assert problems == []
        assert engine.on_window is None  # the browser left: nothing observed any more

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_demo_prints_the_views_address_and_the_page_follows_it(
    tmp_path: Path, chromium: str
) -> None:
    """``streamfuse demo`` (its private broker, simulated devices, the real gateway server)
    serves the view; the page updates while the demo runs and shows the gateway's queue."""
    playwright = pytest.importorskip(
        "playwright.async_api", reason="Playwright is in the test extra: pip install -e '.[test]'"
    )
    demo = subprocess.Popen(
        [sys.executable, "-m", "streamfuse.cli", "demo", "--devices", "3", "--duration", "120",
         "--no-live", "--ui", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"live view: (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        assert url is not None, "".join(lines)

        async def browse() -> None:
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                await page.goto(url)
                await page.wait_for_function(
                    f"() => {STATS}.signalPoints > 0 && {STATS}.heatmaps > 0 && "
                    f"{STATS}.timelinePoints >= 2 && {STATS}.devices.length === 3",
                    timeout=90_000,
                )
                first = await page.evaluate(f"() => {STATS}")
                await page.wait_for_function(
                    f"([n, t]) => {STATS}.timelinePoints > n && {STATS}.signalEnd > t",
                    arg=[first["timelinePoints"], first["signalEnd"]],
                    timeout=30_000,
                )
                gateway = await page.locator("#gateway").inner_text()
                assert "incoming queue" in gateway and "predictions published" in gateway
                await page.select_option("#device", "dev001")
                await page.wait_for_function(
                    f"() => {STATS}.device === 'dev001' && {STATS}.timelinePoints >= 1",
                    timeout=30_000,
                )
                await page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
                await browser.close()

        asyncio.run(browse())
        demo.send_signal(signal.SIGINT)  # the demo drains and prints its summary
        out, _ = demo.communicate(timeout=60)
        lines.append(out)
        assert demo.returncode == 0, "".join(lines)
        assert "summary" in out
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
