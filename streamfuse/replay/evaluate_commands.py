"""``streamfuse evaluate``: its options and what runs them (:mod:`.evaluate`, and
:mod:`.federated_eval` with ``--sites``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..argtypes import bounded, positive_float
from ..learn.names import MODEL_NAMES
from .progress import progress as _progress

_HALF_LIFE = bounded(float, 0, strict=False, what="a half-life in windows >= 0")


def register_evaluate(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``streamfuse`` command line."""
    ev = sub.add_parser(
        "evaluate",
        help="compare fusion levels on a real dataset, prequentially",
        description="eegmat: each subject one device, its rest and arithmetic recordings on one "
        "timeline (--order), a subject's labels learnt only after its session by default "
        "(--labels session: every subject is a new person); levels eeg, ecg, early, "
        "intermediate, late, selected; metrics mean +- sd over subjects.",
    )
    ev.add_argument("--dataset", choices=["eegmat"], default="eegmat", help="dataset")
    ev.add_argument("--data-dir", type=Path, required=True, help="the EEGMAT folder")
    ev.add_argument("--out", type=Path, required=True, help="results JSON")
    ev.add_argument("--plot", type=Path, default=None, help="comparison PNG")
    ev.add_argument("--model", default="lda", choices=MODEL_NAMES,
                    help="online model of every level (lda: diagonal LDA, which transfers "
                    "best to a new person; logreg: the engine's default)")
    ev.add_argument("--window-s", type=positive_float, default=8.0, help="window length, s")
    ev.add_argument("--hop-s", type=positive_float, default=4.0, help="hop, s")
    ev.add_argument("--grid-fs", type=positive_float, default=250.0, help="resampling rate, Hz")
    ev.add_argument("--label-delay-s", type=float, default=None, help="default: one window")
    ev.add_argument("--subjects", type=int, default=None, help="first N subjects only")
    ev.add_argument("--levels", default=None, help="comma-separated subset of the levels")
    ev.add_argument("--order", choices=["balanced", "rest-first", "task-first"],
                    default="balanced", help="which recording each subject plays first "
                    "(balanced: sorted subjects, even positions rest first, odd arithmetic)")
    ev.add_argument("--labels", choices=["session", "window"], default="session",
                    help="session (default): a subject's labels only after its session, so "
                    "models never saw the person they score; window: each label one "
                    "--label-delay-s after its window (models follow the person's own labels)")
    ev.add_argument("--smoothing", type=_HALF_LIFE, default=1.0, metavar="HALF_LIFE",
                    help="average each modality's decisions over the device's recent windows "
                    "with this half-life in windows before fusing them (0: off)")
    ev.add_argument("--no-controls", action="store_true",
                    help="skip the majority, time-only, subject-only and permuted controls")
    ev.add_argument("--seed", type=int, default=0,
                    help="permuted control, bootstrap and damaged-window seed")
    damage = ev.add_mutually_exclusive_group()
    damage.add_argument("--corrupt", choices=["eeg", "ecg"], default=None,
                        help="inject artefacts into this modality in a seeded 30%% of each "
                        "subject's windows; the JSON's 'robustness' compares with a clean run")
    damage.add_argument("--drop", choices=["eeg", "ecg"], default=None,
                        help="remove this modality in a seeded 30%% of each subject's windows")
    ev.add_argument("--conformal-target", type=float, default=0.9,
                    help="coverage of the published level's conformal sets (0.9)")
    ev.add_argument("--sites", type=int, default=None, metavar="K",
                    help="federated evaluation: subjects split over K sites (i mod K); reports "
                    "the local, federated and central arms")
    ev.add_argument("--rounds-every", type=int, default=20, metavar="N",
                    help="with --sites: a site asks for a round once it learnt N windows since "
                    "the last round (20)")
    ev.add_argument("--round-quiet-s", type=_quiet, default=None, metavar="Q|off",
                    help="with --sites: a site also asks for a round when it learnt nothing for "
                    "Q seconds with windows unmerged (the policy's default, 10; 'off': the "
                    "count alone)")
    ev.add_argument("--round-interval-s", type=positive_float, default=None, metavar="T",
                    help="with --sites: also a round T seconds of the timeline after the "
                    "previous one when a site learnt since (a timed server, as 'streamfuse "
                    "federation --interval-s')")
    ev.add_argument("--dp", default=None, metavar="CLIP,NOISE",
                    help="with --sites: differential privacy on each site's update (L2 clip, "
                    "noise multiplier), e.g. 1.0,1.0")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(run=run_evaluate)


def _quiet(text: str) -> float:
    """Q seconds, or 'off' (a quiet time that never ends)."""
    if text.strip().lower() == "off":
        return math.inf
    return positive_float(text)


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import LEVELS, EvalSettings, evaluate_eegmat, plot, table

    levels = tuple(args.levels.split(",")) if args.levels else LEVELS
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        print(f"streamfuse: error: unknown levels {unknown}; choose from {LEVELS}", file=sys.stderr)
        return 2
    settings = EvalSettings(
        window_s=args.window_s,
        hop_s=args.hop_s,
        grid_fs=args.grid_fs,
        label_delay_s=args.label_delay_s,
        model=args.model,
        levels=levels,
        subjects=args.subjects,
        order=args.order,
        labels=args.labels,
        controls=not args.no_controls,
        seed=args.seed,
        corrupt=args.corrupt,
        drop=args.drop,
        conformal_target=args.conformal_target,
        member_smoothing=args.smoothing,
    )
    if getattr(args, "sites", None) is not None:
        return _run_federated(args, settings)
    t0 = time.perf_counter()
    with _progress(not args.no_progress, "evaluating", None) as adv:
        results = evaluate_eegmat(
            args.data_dir, settings, on_subject=lambda name: adv(0, f"evaluating {name}")
        )
    results["wall_s"] = round(time.perf_counter() - t0, 2)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    if args.plot:
        plot(results, args.plot)
    print(table(results))
    print(f"\nwritten {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def _dp(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        clip, noise = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(
            f"streamfuse: error: --dp {text!r}: pass CLIP,NOISE, e.g. 1.0,1.0") from None
    if not clip > 0 or not noise >= 0:
        raise SystemExit(f"streamfuse: error: --dp {text!r}: CLIP > 0 and NOISE >= 0")
    return clip, noise


def _run_federated(args: argparse.Namespace, settings: Any) -> int:
    from .federated_eval import evaluate_federated, table

    if args.dp and settings.model != "logreg":
        print(f"streamfuse: error: --dp covers model logreg only (not {settings.model!r}); "
              "add --model logreg", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with _progress(not args.no_progress, "evaluating sites", None) as adv:
        results = evaluate_federated(args.data_dir, settings, sites=args.sites,
                                     rounds_every=args.rounds_every, dp=_dp(args.dp),
                                     round_interval_s=args.round_interval_s,
                                     **({} if args.round_quiet_s is None else
                                        {"round_quiet_s": args.round_quiet_s}),
                                     on_item=lambda: None)
        adv(0, "done")
    results["wall_s"] = round(time.perf_counter() - t0, 2)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nwritten {args.out}")
    return 0
