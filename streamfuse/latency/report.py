"""Reports of benchmark runs: a text table, a JSON document and a PNG plot (matplotlib Agg)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .histograms import PERCENTILES

log = logging.getLogger("streamfuse.latency.report")

#: rows of the latency table, in pipeline order, with what each one measures
ROWS: tuple[tuple[str, str], ...] = (
    ("floor", "broker pub->sub, same payloads (one hop)"),
    ("round_trip", "pub->broker->relay->broker->sub (two hops)"),
    ("receive", "publish -> gateway socket read (broker hop)"),
    ("decode", "bytes -> Chunk"),
    ("align", "buffer, clock, window, resample"),
    ("features", "per-modality features"),
    ("predict", "fusion + models"),
    ("publish", "gateway queue + encode + publish + hop + read"),
    ("end_to_end", "last chunk publish -> prediction receipt"),
    ("startup", "end to end in the warm-up (apart from the rows above)"),
)
COLUMNS: tuple[str, ...] = tuple(f"p{q:g}" for q in PERCENTILES) + ("max",)


def _fmt(v: object) -> str:
    if not isinstance(v, int | float) or math.isnan(v):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def format_table(doc: Mapping[str, Any]) -> str:
    """The latency table of one run (``BenchResult.to_json()``), in milliseconds."""
    lat = doc["latency_ms"]
    s = doc["settings"]
    head = f"{'stage':<11} {'count':>7} " + " ".join(f"{c:>8}" for c in COLUMNS) + "  what"
    lines = [
        f"streamfuse bench: {s['devices']} devices x {s['duration']:g} s, broker "
        f"{doc.get('broker', '?')}, latencies in ms",
    ]
    cut = doc.get("interrupted_after_s")
    if cut is not None:
        lines.append(
            f"interrupted after {cut:.1f} s of {s['duration']:g} s: figures of what was measured "
            "until then (windows still on their way count as missing)"
        )
    lines += [head, "-" * len(head)]
    for name, what in ROWS:
        row = lat.get(name, {})
        if name == "startup" and not row.get("count"):
            continue  # no warm-up asked for
        lines.append(
            f"{name:<11} {int(row.get('count', 0)):>7} "
            + " ".join(f"{_fmt(row.get(c)):>8}" for c in COLUMNS)
            + f"  {what}"
        )
    c = doc["counts"]
    if "gateway_added_p99_over_one_hop_ms" in doc:
        added = (
            f"gateway-added p99 over the broker round trip: {_fmt(doc['gateway_added_p99_ms'])} "
            f"ms (over one hop: {_fmt(doc['gateway_added_p99_over_one_hop_ms'])} ms)"
        )
    else:  # a report written before the round trip was measured
        added = f"gateway-added p99 over one hop: {_fmt(doc['gateway_added_p99_ms'])} ms"
    lines += [
        "",
        added,
        f"windows timed {c.get('timed', 0)}, expected {c.get('expected', 0)}, missing "
        f"{c.get('missing', 0)}, closed by lateness budget {c.get('closed_by_timeout', 0)}"
        + (
            f", in the first {s.get('warmup_s', 0):g} s (startup) {c['startup']}"
            if c.get("startup")
            else ""
        ),
        f"gateway CPU {doc['gateway_cpu_fraction']:.1%} of one core "
        f"(~{_fmt(doc.get('devices_per_core_estimate'))} devices per core if linear); publisher "
        f"{doc['publisher']['messages_per_s']:.0f} msg/s, schedule lag p99 "
        f"{_fmt(doc['publisher']['lag_p99_ms'])} ms",
    ]
    per = doc.get("cpu_ms_per_device_second") or {}
    ratio = doc.get("gateway_to_broker_cpu")
    if per and ratio is not None and math.isfinite(ratio):
        lines.append(
            f"gateway CPU / broker CPU per device-second: {ratio:.1f} (gateway "
            f"{_fmt(per['gateway'])} ms, broker {_fmt(per['broker'])} ms per device-second)"
        )
    relay = doc.get("relay") or {}
    if relay:
        n = int(relay["messages"])
        lines.append(
            f"relay echoed {n} messages, {_fmt(relay['cpu_s'] / n * 1e3 if n else math.nan)} ms "
            "CPU per message"
        )
    return "\n".join(lines)


def format_ramp(docs: Sequence[Mapping[str, Any]], best: int, target_ms: float) -> str:
    """One line per ramp step and the verdict."""
    lines = [
        f"{'devices':>8} {'e2e p99':>9} {'floor p99':>9} {'rt p99':>9} {'cpu':>6} {'lag p99':>8} "
        f"{'missing':>8}"
    ]
    for d in sorted(docs, key=lambda d: d["settings"]["devices"]):
        lat = d["latency_ms"]
        lines.append(
            f"{d['settings']['devices']:>8} {_fmt(lat['end_to_end']['p99']):>9} "
            f"{_fmt(lat['floor']['p99']):>9} {_fmt(lat.get('round_trip', {}).get('p99')):>9} "
            f"{d['gateway_cpu_fraction']:>6.0%} "
            f"{_fmt(d['publisher']['lag_p99_ms']):>8} {d['counts'].get('missing', 0):>8}"
            + ("  (interrupted)" if d.get("interrupted_after_s") is not None else "")
        )
    lines.append(f"largest device count holding p99 < {target_ms:g} ms: {best}")
    return "\n".join(lines)


def write_json(path: str | Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` as indented JSON (NaN written as null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, Mapping):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    Path(path).write_text(json.dumps(clean(doc), indent=2, default=str) + "\n", encoding="utf-8")


def plot(path: str | Path, doc: Mapping[str, Any], ramp: Sequence[Mapping[str, Any]] = ()) -> None:
    """Percentile-distribution plot of every stage (and p99 against devices after a ramp)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .histograms import LatencyHistogram

    panels = 2 if ramp else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    for name, _ in ROWS:
        text = doc.get("hdr", {}).get(name)
        if not text:
            continue
        qs, vals = LatencyHistogram.decode(name, text).curve()
        x = [1.0 / (1.0 - q / 100.0) for q in qs]
        broker = name in ("floor", "round_trip")  # the references: dashed
        ax.plot(
            x,
            vals,
            label=name,
            lw=2.2 if broker or name == "end_to_end" else 1.2,
            ls="--" if broker else "-",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["0", "50", "90", "99", "99.9", "99.99"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    s = doc["settings"]
    ax.set_title(f"{s['devices']} devices, {s['duration']:g} s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    if ramp:
        bx = axes[0][1]
        pts = sorted(ramp, key=lambda d: d["settings"]["devices"])
        n = [d["settings"]["devices"] for d in pts]
        bx.plot(n, [d["latency_ms"]["end_to_end"]["p99"] for d in pts], "o-", label="e2e p99")
        bx.plot(n, [d["latency_ms"]["floor"]["p99"] for d in pts], "s--", label="floor p99")
        rt = [d["latency_ms"].get("round_trip", {}).get("p99") for d in pts]
        if any(v is not None for v in rt):
            bx.plot(n, [math.nan if v is None else v for v in rt], "^--", label="round trip p99")
        bx.axhline(50.0, color="k", lw=0.8, ls=":")
        bx.set_xlabel("devices")
        bx.set_ylabel("p99 (ms)")
        bx.set_yscale("log")
        bx.grid(True, which="both", alpha=0.3)
        bx.legend(fontsize=8)
        bx.set_title("ramp")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
