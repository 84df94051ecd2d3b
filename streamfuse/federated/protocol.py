"""The federation's wire protocol (version 1): topics, messages, their checks, and optional DP.

Rounds travel over MQTT (:mod:`streamfuse.mqtt`); every payload is UTF-8 JSON, never a pickle.
Topics live under ``{root}/{federation}/`` (``root`` defaults to ``streamfuse-fed``):

======================  ================  =====================================================
topic                   direction         payload
======================  ================  =====================================================
``round``               server -> sites   ``{"v": 1, "round": r, "wait_s": W}``: round ``r`` is
                                          open for ``W`` seconds
``update/{site}``       site -> server    ``{"v": 1, "round": r, "site": s, "n": n,
                                          "state": S}``: ``n`` windows learnt since the site's
                                          last update, ``S`` its hub state
                                          (:func:`streamfuse.federated.merge.hub_state`)
``request/{site}``      site -> server    ``{"v": 1, "site": s, "why": w}``: the site asks
                                          for a round (``w``: ``count`` or ``quiet``, its
                                          round policy, :mod:`.policy`)
``model``               server -> sites   ``{"v": 1, "round": r, "parties": k, "n": N,
                        (retained)        "fingerprint": f, "state": S}``: the merged model
======================  ================  =====================================================

A hub state holds only model parameters and aggregate statistics, by feature, class, level
and modality *names*: weights, intercepts, per-feature counts/means/variances, Hedge losses,
selector scores. No window, feature vector, label or device id is in it
(``tests/test_federated_protocol.py`` inspects every message a site sends).

Differential privacy (off by default): before a site sends, the change of its learnt
parameters since the model it last adopted (every model's weights and intercepts, late
fusion's Hedge losses) is clipped to L2 norm ``clip`` and Gaussian noise of sd
``noise * clip`` is added to each entry (the Gaussian mechanism on a site's whole update, as
DP-FedAvg, McMahan et al. 2018); it covers ``model = "logreg"`` (a diagonal LDA's
parameters are class means in raw units: asking for DP with it is an error).
**Not covered**: the counts ``n``, the scalers' per-feature
counts, means and variances, and the selector's scores are sent as they are (aggregates over
all of a site's windows, in raw feature units: clipped together with the weights they would
swamp them, and noise on their scale would wreck standardisation); the guarantee below is
about the parameters only. :func:`epsilon` gives the
guarantee for R rounds via zero-concentrated DP (Bun & Steinke 2016): ``rho = R / (2 noise^2)``,
``eps = rho + 2 sqrt(rho ln(1/delta))``, per site (its whole contribution is the unit).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .merge import NotMergeable, State, merge_hubs, to_wire

VERSION = 1
ROOT = "streamfuse-fed"
#: the largest update or model accepted (bytes)
MAX_PAYLOAD = 16 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class UpdateRejected(ValueError):
    """A message that breaks the protocol; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{kind} {name!r}: use 1-64 letters, digits, '_', '-' or '.'")
    return name


def topic(federation: str, *parts: str, root: str = ROOT) -> str:
    return "/".join((root, federation, *parts))


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(to_wire(message), separators=(",", ":"), allow_nan=False).encode()


def _decode(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise UpdateRejected("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD}")
    try:
        msg = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UpdateRejected("malformed", f"not JSON ({exc})") from None
    if not isinstance(msg, dict) or msg.get("v") != VERSION:
        raise UpdateRejected("malformed", f"not a version-{VERSION} object")
    return msg


def _int(msg: Mapping[str, Any], key: str) -> int:
    v = msg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise UpdateRejected("malformed", f"{key!r} must be an integer >= 0")
    return v


@dataclass(frozen=True, slots=True)
class Update:
    round: int
    site: str
    n: int
    state: State


def parse_update(payload: bytes, site_from_topic: str) -> Update:
    """A site's update, checked: the schema, the site, and that its state can be merged
    (every array the shape its names say, finite)."""
    msg = _decode(payload)
    site = msg.get("site")
    if site != site_from_topic:
        raise UpdateRejected("malformed", f"site {site!r} does not match its topic")
    state = msg.get("state")
    if not isinstance(state, dict):
        raise UpdateRejected("malformed", "'state' must be an object")
    r, n = _int(msg, "round"), _int(msg, "n")
    try:
        merge_hubs([state], [n])  # every check the merge makes, on this party alone
    except (NotMergeable, KeyError, TypeError, ValueError) as exc:
        raise UpdateRejected("bad_shape", str(exc)) from None
    return Update(r, site_from_topic, n, state)


def parse_model(payload: bytes) -> tuple[int, int, str, State]:
    """``(round, parties, fingerprint, state)`` of a merged model."""
    msg = _decode(payload)
    state = msg.get("state")
    if not isinstance(state, dict) or not isinstance(msg.get("fingerprint"), str):
        raise UpdateRejected("malformed", "a model needs 'state' and 'fingerprint'")
    try:
        merge_hubs([state], [1])
    except (NotMergeable, KeyError, TypeError, ValueError) as exc:
        raise UpdateRejected("bad_shape", str(exc)) from None
    return _int(msg, "round"), _int(msg, "parties"), msg["fingerprint"], state


def parse_request(payload: bytes, site_from_topic: str) -> str:
    """A site's round request, checked; returns its reason."""
    msg = _decode(payload)
    if msg.get("site") != site_from_topic:
        raise UpdateRejected("malformed", f"site {msg.get('site')!r} does not match its topic")
    why = msg.get("why")
    if why not in ("count", "quiet"):
        raise UpdateRejected("malformed", "'why' must be 'count' or 'quiet'")
    return str(why)


def parse_round(payload: bytes) -> tuple[int, float]:
    msg = _decode(payload)
    wait = msg.get("wait_s")
    if not isinstance(wait, int | float) or not wait >= 0:
        raise UpdateRejected("malformed", "'wait_s' must be a number >= 0")
    return _int(msg, "round"), float(wait)


# ---------------------------------------------------------------------------- privacy
def check_shareable(state: Any, path: str = "") -> None:
    """ValueError when ``state`` holds a model whose parameters are samples: an evolving
    neuro-fuzzy rule starts with its centre *at* a (standardised) sample and the state carries
    the frame to undo the standardisation, so it must not leave a site. Such models merge
    between shards of one deployment (:func:`~.merge.merge_hubs`), not across sites."""
    if isinstance(state, Mapping):
        if state.get("kind") in ("ets", "neurofuzzy"):
            raise ValueError(
                f"{path or 'the model'} is neuro-fuzzy: its rule centres are feature vectors "
                "the site learnt from, which must not leave a site; federate sites with model "
                "= \"logreg\" or \"lda\"")
        for k, v in state.items():
            check_shareable(v, f"{path}.{k}" if path else str(k))



#: the arrays privatised: the learnt parameters (the scaler statistics are in raw feature
#: units; clipped together with the weights they would swamp them, see the module doc)
_FLOATS = {"logreg": ("W", "b")}


def _float_leaves(state: Any, base: Any, path: str, out: list[tuple[str, Any, Any]]) -> None:
    """(path, array, base array) of every private float array of a hub state."""
    if isinstance(state, Mapping):
        if state.get("kind") == "lda":
            raise ValueError(f"dp: {path or 'the model'} is a diagonal LDA, whose parameters are "
                             "class means in raw feature units; DP covers model = \"logreg\"")
        if state.get("kind") in ("ets", "neurofuzzy"):
            raise ValueError(f"dp: {path or 'the model'} is a neuro-fuzzy model, whose rules are "
                             "centres in (standardised) feature units; DP covers "
                             "model = \"logreg\"")
        if state.get("kind") == "logreg":
            for k in _FLOATS["logreg"]:
                out.append((f"{path}.{k}", state, base if isinstance(base, Mapping) else None))
            return
        for k, v in state.items():
            if k == "losses" and isinstance(v, Mapping):
                out.append((f"{path}.losses", state, base if isinstance(base, Mapping) else None))
            else:
                sub = base.get(k) if isinstance(base, Mapping) else None
                _float_leaves(v, sub, f"{path}.{k}", out)


def privatize(state: State, base: State | None, clip: float, noise: float,
              rng: np.random.Generator) -> State:
    """``state`` with its change since ``base`` clipped to L2 norm ``clip`` and Gaussian noise
    of sd ``noise * clip`` added (module doc); entries absent from ``base`` count from 0."""
    if not clip > 0 or not noise >= 0:
        raise ValueError(f"dp clip={clip}, noise={noise}: pass clip > 0 and noise >= 0")
    import copy

    out = copy.deepcopy(to_wire(state))
    # DP covers the members' parameters and Hedge losses; the review's levels (attention,
    # Bayes, MKL) are not privatised, so with DP on they are not sent and stay local
    out.pop("levels", None)
    leaves: list[tuple[str, Any, Any]] = []
    _float_leaves(out, to_wire(base) if base is not None else None, "", leaves)
    deltas: list[tuple[Any, Any, np.ndarray, np.ndarray]] = []
    for path, holder, bholder in leaves:
        key = path.rsplit(".", 1)[1]
        if key == "losses":
            names = sorted(holder["losses"])
            cur = np.array([holder["losses"][m] for m in names], dtype=float)
            ref = np.array([(bholder or {}).get("losses", {}).get(m, 0.0) for m in names])
            deltas.append((holder, ("losses", names), cur, ref))
            continue
        cur = np.asarray(holder[key], dtype=float)
        ref = np.zeros_like(cur)
        if bholder is not None and key in bholder:
            b = np.asarray(bholder[key], dtype=float)
            same_names = (bholder.get("features") == holder.get("features")
                          and bholder.get("classes") == holder.get("classes"))
            if same_names and b.shape == cur.shape:
                ref = b
        deltas.append((holder, key, cur, ref))
    norm = math.sqrt(sum(float(np.sum((c - r) ** 2)) for _, _, c, r in deltas))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    for holder, key, cur, ref in deltas:
        new = ref + (cur - ref) * scale + rng.normal(0.0, noise * clip, size=cur.shape)
        if isinstance(key, tuple):
            holder["losses"] = {m: float(v) for m, v in zip(key[1], new, strict=True)}
        else:
            if key == "vars":
                new = np.maximum(new, 0.0)
            holder[key] = new.tolist()
    return out


def epsilon(rounds: int, noise: float, delta: float = 1e-5) -> float:
    """The (eps, delta)-DP of ``rounds`` noisy updates of one site (zCDP; module doc)."""
    if noise <= 0:
        return math.inf
    rho = rounds / (2.0 * noise * noise)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))
