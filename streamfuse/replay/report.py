"""The eegmat comparison as a Markdown table and a PNG (from the results' JSON shape)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FUSION_LEVELS
from .eegmat import METRICS


def _cells(entry: Mapping[str, Any]) -> list[str]:
    cells = []
    for k in METRICS:
        m = entry[k]
        cells.append("n/a" if m["mean"] is None else f"{m['mean']:.3f} ± {m['sd']:.3f}")
    return cells


def table(results: Mapping[str, Any]) -> str:
    """Levels, then controls, as a Markdown table (mean ± sd over subjects), and the paired
    comparison in one line."""
    levels = results["levels"]
    head = "| level | " + " | ".join(METRICS) + " | windows |"
    rule = "|---" * (len(METRICS) + 2) + "|"
    rows = [head, rule]
    for level, entry in levels.items():
        published = sorted(entry.get("published_levels", {}))
        name = level
        if level in FUSION_LEVELS and published and published != [level]:
            name = f"{level} (engine gave {', '.join(published)})"
        elif level == "selected" and published:
            counts = entry["published_levels"]
            name = "selected (" + ", ".join(f"{k} {counts[k]}" for k in published) + ")"
        rows.append(f"| {name} | " + " | ".join(_cells(entry)) + f" | {entry['windows']} |")
    controls = results.get("controls") or {}
    for name in ("majority", "time-only", "subject-only"):
        if name in controls:
            entry = controls[name]
            rows.append(f"| *control: {name}* | " + " | ".join(_cells(entry))
                        + f" | {entry['windows']} |")  # fmt: skip
    permuted = controls.get("permuted") or {}
    for level in levels:
        if level in permuted:
            entry = permuted[level]
            rows.append(f"| *control: permuted, {level}* | " + " | ".join(_cells(entry))
                        + f" | {entry['windows']} |")  # fmt: skip
    text = "\n".join(rows)
    p = results.get("paired") or {}
    if p.get("diff_mean") is not None:
        lo, hi = p["ci95"]
        text += (
            f"\n\npaired ({p['n']} subjects): {p['fusion']} − {p['unimodal']} AUC = "
            f"{p['diff_mean']:+.3f}, 95 % bootstrap CI [{lo:+.3f}, {hi:+.3f}], "
            f"Wilcoxon p = {p['p']:.3g}; {p['fusion']} higher in {p['wins']} of {p['n']}"
        )
    return text


def plot(results: Mapping[str, Any], path: str | Path) -> None:
    """Left: AUC per subject for every level and control (points, mean bars), chance (0.5,
    the majority control's AUC) dashed. Middle: the best single modality and the best fusion
    level joined subject by subject, with the paired figures. Right: the six metrics,
    mean ± sd, the majority control's accuracy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]
    subjects = results.get("subjects", [])
    controls = results.get("controls") or {}
    permuted = controls.get("permuted") or {}
    p = results.get("paired") or {}
    cols: list[tuple[str, list[float | None], bool]] = []  # name, per-subject AUC, control?
    for level in levels:
        cols.append((level, [x["levels"].get(level, {}).get("auc") for x in subjects], False))
    for name in ("time-only", "subject-only"):
        if name in controls:
            cols.append((name, controls[name]["per_subject_auc"], True))
    for level in ("intermediate", "selected"):
        if level in permuted:
            cols.append((f"permuted\n{level}", permuted[level]["per_subject_auc"], True))

    fig, (ax, px, bx) = plt.subplots(
        1, 3, figsize=(16, 5), dpi=110, gridspec_kw={"width_ratios": [1.25, 0.35, 1]}
    )
    rng = np.random.default_rng(0)
    xs = {}
    for i, (name, vals, is_control) in enumerate(cols):
        v = np.array([np.nan if a is None else a for a in vals], dtype=float)
        xs[name] = i
        color = "0.6" if is_control else f"C{i}"
        ax.bar(i, np.nanmean(v) if np.isfinite(v).any() else 0.0, 0.7, color=color, alpha=0.35,
               hatch="//" if is_control else None)  # fmt: skip
        jitter = rng.uniform(-0.12, 0.12, v.size)
        ax.scatter(i + jitter, v, s=10, color=color, zorder=3)
    fu, un = p.get("fusion"), p.get("unimodal")
    if fu in xs and un in xs:
        a = [x["levels"].get(un, {}).get("auc") for x in subjects]
        b = [x["levels"].get(fu, {}).get("auc") for x in subjects]
        for ya, yb in zip(a, b, strict=True):
            if ya is not None and yb is not None:
                up = yb > ya
                px.plot([0, 1], [ya, yb], color="C2" if up else "C3", alpha=0.6, lw=0.9,
                        marker="o", ms=3)  # fmt: skip
        px.set_xticks([0, 1], [un, fu], fontsize=8)
        px.set_xlim(-0.3, 1.3)
        if p.get("diff_mean") is not None:
            lo, hi = p["ci95"]
            px.set_title(f"paired: {p['diff_mean']:+.3f}\n[{lo:+.3f}, {hi:+.3f}], "
                         f"p = {p['p']:.2g}", fontsize=8)  # fmt: skip
    px.axhline(0.5, color="k", ls="--", lw=0.8)
    px.set_ylim(0, 1.05)
    px.set_ylabel("AUC per subject (green: fusion higher)", fontsize=8)
    px.grid(axis="y", alpha=0.3)
    ax.axhline(0.5, color="k", ls="--", lw=0.8, label="chance / majority AUC")
    ax.set_xticks(range(len(cols)), [c[0] for c in cols], fontsize=8, rotation=30)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AUC per subject (bar: mean)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)

    names = list(levels)
    x = np.arange(len(METRICS))
    width = 0.8 / max(1, len(names))
    for i, level in enumerate(names):
        means = [levels[level][k]["mean"] for k in METRICS]
        sds = [levels[level][k]["sd"] for k in METRICS]
        bx.bar(
            x + (i - (len(names) - 1) / 2) * width,
            [np.nan if m is None else m for m in means],
            width,
            yerr=[0.0 if v is None else v for v in sds],
            capsize=2,
            label=level,
            color=f"C{i}",
        )
    maj = controls.get("majority")
    if maj and maj["accuracy"]["mean"] is not None:
        bx.axhline(maj["accuracy"]["mean"], color="k", ls="--", lw=0.8,
                   label="majority accuracy")  # fmt: skip
    bx.set_xticks(x, [m.upper() if m == "auc" else m for m in METRICS])
    bx.set_ylim(0, 1.05)
    bx.set_ylabel("mean ± sd over subjects")
    bx.legend(ncol=4, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    bx.grid(axis="y", alpha=0.3)
    proto = results.get("protocol", {})
    order, labels = proto.get("order", "?"), proto.get("labels", "?")
    model = proto.get("model", "?")
    fig.suptitle(f"eegmat rest vs arithmetic, prequential, {len(subjects)} subjects, order "
                 f"{order}, {labels} labels, model {model}: levels and controls")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
