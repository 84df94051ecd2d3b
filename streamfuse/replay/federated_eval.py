"""Federated evaluation on eegmat (issue 18): local, federated and central arms, same windows.

Protocol (on top of :mod:`streamfuse.replay.evaluate`'s: same windows, labels, order rule,
model and metrics):

- **sites**: subject number ``i`` of the sorted names belongs to site ``i mod K`` (a fixed,
  round-robin assignment, so every site gets rest-first and arithmetic-first subjects under
  the balanced order); each subject keeps its global position for the order rule;
- **one timeline**: every site plays its own subjects one after the other from time 0 (the
  same gap between subjects as the single-engine protocol), so the K sites run side by side;
  the items of all sites are merged by arrival time;
- **local**: one engine per site, each seeing only its site's items; sites never merge;
- **federated**: the same K engines, and a round whenever a site asks for one under the round
  policy of the live federation (:mod:`streamfuse.federated.policy`: ``rounds_every`` windows
  learnt since the last round, or its learning quiet ``round_quiet_s`` seconds of the timeline
  with windows unmerged): each site's shareable state
  (:func:`streamfuse.federated.merge.hub_state`) is merged (FedAvg weighted by the windows each
  site learnt since the previous round, the previous merged state as base) and loaded back into
  every site, which goes on predicting with it at once (with ``round_interval_s``, also a round
  that many seconds of the timeline after the previous one when a site learnt since). What
  :func:`~streamfuse.federated.merge.local_levels` names (the AUC selector, whose memory holds
  labels and device ids; the levels without a merge rule) stays local to each site;
- **central**: one engine sees every site's items (every subject, the same interleaving);
- **one clock**: every engine of every arm closes its overdue windows at the same steps
  (:class:`_Clock`), so with a round after every labelled window the federated arm predicts
  every window with the central arm's model;
- figures per arm and level: the six Table-4 metrics, mean ± sample sd over subjects, each
  subject scored on its own windows, exactly as the single-engine evaluation scores them.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import DataSourceError
from ..federated.merge import fingerprint, hub_state, load_hub, local_levels, merge_hubs
from ..federated.policy import QUIET_S, RoundPolicy, SiteLearning
from ..federated.protocol import VERSION, encode, epsilon, privatize
from ..types import Prediction
from .eegmat import (
    LABEL_MODES,
    METRICS,
    REST,
    TASK,
    EvalSettings,
    Subject,
    eval_config,
    first_class,
    subject_items,
    subject_names,
)
from .scoring import LevelRun, rounded, score_run, summary

log = logging.getLogger("streamfuse.replay.federated_eval")

ARMS = ("local", "federated", "central")
_TICK = "tick"


def site_of(position: int, sites: int) -> int:
    """The site of the subject at ``position`` in the sorted names (round-robin)."""
    return position % sites


def _site_stream(root: Path, site: int, members: list[tuple[int, str]], s: EvalSettings,
                 subjects: dict[str, Subject]) -> Iterator[tuple[float, int, int, Any]]:
    """One site's items by arrival, subject after subject from time 0; a tick closes each
    subject's last windows (as the single-engine evaluation does)."""
    gap = 2 * s.window_s + s.delay
    start = 0.0
    k = 0
    for position, name in members:
        subj, items = subject_items(root, name, start, s, first_class(s.order, position))
        subjects[name] = subj
        for item, now in items:
            yield now, site, k, item
            k += 1
        yield subj.end + gap - s.hop_s, site, k, _TICK
        k += 1
        start = math.ceil((subj.end + gap) / s.hop_s) * s.hop_s


class _Federation:
    """K engines merged when a site asks for a round (:mod:`streamfuse.federated.policy`:
    ``every`` windows learnt since the last round, or its learning quiet for ``quiet_s``
    seconds of the timeline with windows unmerged), FedAvg with the previous round as base;
    with ``interval``, also a timed round that long after the previous one when a site
    learnt since (the server's backstop)."""

    def __init__(self, engines: list[Engine], policy: RoundPolicy,
                 dp: tuple[float, float] | None = None, seed: int = 0,
                 interval: float | None = None) -> None:
        self.engines = engines
        self.policy = policy
        self.sites = [SiteLearning(policy) for _ in engines]
        self.interval = math.inf if interval is None else interval
        self.last = 0.0  # timeline time of the previous round
        self.dp = dp
        self.rng = np.random.default_rng(seed)
        self.base: dict[str, Any] | None = None
        self.rounds = 0
        self.triggers: Counter[str] = Counter()
        self.update_bytes: list[int] = []  # per round: every party's update, summed
        self.model_bytes: list[int] = []  # per round: the merged model (sent once, fanned out)
        self.fingerprint = ""

    def maybe_round(self, t: float = 0.0) -> None:
        for site, e in zip(self.sites, self.engines, strict=True):
            site.observe(e.counters.get("learned", 0), t)
        why = next((w for w in (s.due(t) for s in self.sites) if w is not None), None)
        if why is None and any(s.unmerged for s in self.sites) and t - self.last >= self.interval:
            why = "timer"
        if why is None:
            return
        self.last = t
        self.triggers[why] += 1
        new = [s.merged() for s in self.sites]
        states = [hub_state(e.hub) for e in self.engines]
        if self.dp is not None:
            states = [privatize(st, self.base, *self.dp, self.rng) for st in states]
        self.update_bytes.append(sum(len(encode({"v": VERSION, "round": self.rounds + 1,
                                                 "site": str(k), "n": n, "state": st}))
                                     for k, (n, st) in enumerate(zip(new, states, strict=True))))
        merged = merge_hubs(states, new, self.base)
        for e in self.engines:
            load_hub(e.hub, merged)
        self.base = merged
        self.rounds += 1
        self.fingerprint = fingerprint(merged)
        self.model_bytes.append(len(encode({"v": VERSION, "round": self.rounds,
                                            "parties": len(states), "n": sum(new),
                                            "fingerprint": self.fingerprint, "state": merged})))

    def cost(self, duration_s: float) -> dict[str, object]:
        """What the rounds cost on the wire (the protocol's messages, as the live federation
        would send them): rounds per hour of the timeline, bytes per round."""
        per = [u + m for u, m in zip(self.update_bytes, self.model_bytes, strict=True)]
        k = len(self.engines)
        return {
            "rounds": self.rounds, "triggers": dict(self.triggers),
            "timeline_h": round(duration_s / 3600, 4),
            "rounds_per_hour": round(self.rounds / (duration_s / 3600), 2) if duration_s else None,
            "messages_per_round": {"request": "1 per asking site", "round": 1, "update": k,
                                   "model": f"1 (retained; the broker delivers it to {k} sites)"},
            "update_bytes_per_site": round(float(np.mean(self.update_bytes)) / k) if per else 0,
            "model_bytes": round(float(np.mean(self.model_bytes))) if per else 0,
            "bytes_per_round": round(float(np.mean(per))) if per else 0,
            "bytes_per_hour": round(sum(per) / (duration_s / 3600)) if duration_s else None,
        }


class _Clock:
    """One gateway clock for every engine of every arm: all of them close their overdue
    windows at the same step (after the step's item and round), at least every ``every``
    seconds of the timeline.

    An engine closes overdue windows of *all* its devices when it ticks, which it does by
    itself every quarter hop of the items it is pushed. The central engine is pushed every
    site's items, a site's engine only its own, so on their own they would close a window of
    site j at different steps (central: when any site's item comes; the site: at its next own
    item, maybe after a round), i.e. predict it with different models. Ticking them together
    at least every eighth of a hop, right after the step's round, makes the arms predict each
    window at the same step; then a round after every labelled window gives the federated
    arm the central arm's exact predictions (tests/test_federated_eval.py)."""

    def __init__(self, every: float, engines: list[tuple[str, Engine]]) -> None:
        self.every = every
        self.engines = engines
        self.last = -math.inf

    def advance(self, now: float, force: bool = False) -> Iterator[tuple[str, list[Any]]]:
        if not force and now - self.last < self.every:
            return
        self.last = now
        for arm, engine in self.engines:
            yield arm, engine.tick(now)


def evaluate_federated(
    data_dir: str | Path,
    settings: EvalSettings | None = None,
    *,
    sites: int = 4,
    rounds_every: int = 20,
    dp: tuple[float, float] | None = None,
    on_item: Callable[[], None] | None = None,
    round_interval_s: float | None = None,
    round_quiet_s: float | None = QUIET_S,
) -> dict[str, object]:
    """Run the three arms; return ``{"arms": {"local", "federated", "central"}, ...}``."""
    s = settings or EvalSettings()
    if s.labels not in LABEL_MODES:
        raise DataSourceError(f"labels={s.labels!r}; choose one of {LABEL_MODES}")
    if sites < 1 or rounds_every < 1:
        raise DataSourceError(f"sites={sites}, rounds_every={rounds_every}: pass both >= 1")
    first_class(s.order, 0)
    if round_quiet_s is not None and math.isinf(round_quiet_s):
        round_quiet_s = None  # off: the count alone
    root = Path(data_dir)
    names = subject_names(root)
    if s.subjects is not None:
        names = names[: s.subjects]
    if sites > len(names):
        raise DataSourceError(f"sites={sites} but only {len(names)} subjects: pass --sites "
                              f"<= {len(names)}")
    config = eval_config(s)
    local = [Engine(config) for _ in range(sites)]
    fed = [Engine(config) for _ in range(sites)]
    central = Engine(config)
    federation = _Federation(fed, RoundPolicy(rounds_every, round_quiet_s), dp, s.seed,
                             round_interval_s)
    members: list[list[tuple[int, str]]] = [[] for _ in range(sites)]
    for position, name in enumerate(names):
        members[site_of(position, sites)].append((position, name))
    subjects: dict[str, Subject] = {}
    preds: dict[str, list[Prediction]] = {arm: [] for arm in ARMS}
    streams = [_site_stream(root, k, members[k], s, subjects) for k in range(sites)]

    def keep(arm: str, out: list[Any]) -> None:
        preds[arm].extend(o for o in out if isinstance(o, Prediction))

    clock = _Clock(s.hop_s / 8, [("local", e) for e in local] + [("federated", e) for e in fed]
                   + [("central", central)])
    end = 0.0
    for now, site, _, item in heapq.merge(*streams):
        end = now
        if item is not _TICK:
            keep("local", local[site].push(item, now))
            keep("federated", fed[site].push(item, now))
            keep("central", central.push(item, now))
        federation.maybe_round(now)
        for arm, out in clock.advance(now, force=item is _TICK):
            keep(arm, out)
        if on_item is not None:
            on_item()
    for e in local:
        keep("local", e.flush())
    for e in fed:
        keep("federated", e.flush())
    keep("central", central.flush())
    order = [subjects[n] for n in names]
    arms: dict[str, object] = {}
    for arm in ARMS:
        by_device: dict[str, list[Prediction]] = {}
        for p in preds[arm]:
            by_device.setdefault(p.device, []).append(p)
        levels: dict[str, object] = {}
        for level in s.levels:
            run = LevelRun(level, central)
            for subj in order:
                score_run(run, subj, by_device.get(subj.name, []))
            figs = {n: m.get() for n, m in run.scores.items()}
            entry: dict[str, object] = {k: summary([f[k] for f in figs.values()])
                                        for k in METRICS}
            entry["windows"] = sum(m.n for m in run.scores.values())
            entry["unscored"] = run.unscored
            entry["per_subject_auc"] = [
                rounded(figs[n]["auc"]) if n in figs else None for n in names]
            levels[level] = entry
        arms[arm] = {"levels": levels}
    best = _best_fusion(arms)
    return {
        "dataset": "eegmat (PhysioNet EEG During Mental Arithmetic Tasks 1.0.0, Zyma et al. 2019)",
        "protocol": {
            "sites": sites,
            "rounds_every": rounds_every,
            "round_interval_s": round_interval_s,
            "round_quiet_s": round_quiet_s,
            "assignment": "subject i of the sorted names -> site i mod K",
            "timeline": "every site plays its subjects one after the other from t=0, side by "
                        "side; central sees every site's items in the same order",
            "round": "when a site asks (federated/policy.py): rounds_every windows learnt since "
                     "the last round, or its learning quiet for round_quiet_s s of the timeline "
                     "with windows unmerged (or round_interval_s after the previous round); "
                     "FedAvg of each site's level models and fusion levels (weights: windows "
                     "learnt since the previous round); what 'not_merged' names stays at each "
                     "site",
            "clock": "every engine of every arm closes its overdue windows at the same steps",
            "order": s.order, "labels": s.labels, "model": s.model, "window_s": s.window_s,
            "hop_s": s.hop_s, "label_delay_s": s.delay, "normalize": s.normalize,
            "selector_score": s.selector_score, "positive": TASK, "other": REST,
            "not_merged": local_levels(fed[0].hub),
            "sd": "sample (ddof=1) over subjects",
        },
        "sites": {str(k): [n for _, n in members[k]] for k in range(sites)},
        "rounds": federation.rounds,
        "cost": federation.cost(end),
        "dp": None if dp is None else {
            "clip": dp[0], "noise": dp[1], "delta": 1e-5,
            "epsilon": epsilon(federation.rounds, dp[1]),
            "unit": "one site's whole contribution, every round (zCDP composition)"},
        "merged_fingerprint": federation.fingerprint,
        "arms": arms,
        "best_fusion_level": best,
    }


def _best_fusion(arms: dict[str, object]) -> dict[str, object] | None:
    """The fusion level with the best central AUC, and the three arms' AUCs on it."""
    central = arms["central"]["levels"]  # type: ignore[index]
    cands = [lv for lv in ("early", "intermediate", "late") if lv in central
             and central[lv]["auc"]["mean"] is not None]
    if not cands:
        return None
    level = max(cands, key=lambda lv: central[lv]["auc"]["mean"])
    aucs = {arm: arms[arm]["levels"][level]["auc"]["mean"] for arm in ARMS}  # type: ignore[index]
    return {
        "level": level, "auc": aucs,
        "federated_minus_central": aucs["federated"] - aucs["central"],
        "federated_minus_local": aucs["federated"] - aucs["local"],
    }


def table(results: dict[str, Any]) -> str:
    """A plain-text table: AUC and accuracy (mean ± sd) per arm and level."""
    lines = [f"{'level':<14}" + "".join(f"{arm + ' AUC':>22}" for arm in ARMS)]
    levels = results["arms"]["central"]["levels"]
    for lv in levels:
        cells = []
        for arm in ARMS:
            a = results["arms"][arm]["levels"][lv]["auc"]
            cells.append("n/a" if a["mean"] is None else f"{a['mean']:.3f} ± {a['sd']:.3f}")
        lines.append(f"{lv:<14}" + "".join(f"{c:>22}" for c in cells))
    c = results.get("cost") or {}
    lines.append(f"rounds: {results['rounds']} ({c.get('triggers')}), "
                 f"{c.get('rounds_per_hour')} per hour, {c.get('bytes_per_round')} bytes per "
                 f"round; best fusion level: {(results['best_fusion_level'] or {}).get('level')}")
    kept = results["protocol"].get("not_merged")
    if kept:
        lines.append(f"not merged (each site's own in the federated arm): {', '.join(kept)}")
    return "\n".join(lines)
