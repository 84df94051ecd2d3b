"""Benchmarks of the evolving neuro-fuzzy model (issue 5, acceptance 2 and 3).

Run: ``/work/venv/bin/pytest bench/test_bench_learn.py -p no:cacheprovider -s``

- learn+predict per sample, 20 features, at most 30 rules: ours vs ``evolvingfuzzysystems``' eTS
  in the same run (skipped when the package is absent);
- Mackey–Glass (tau = 17) online one-step-ahead NDEI of ours, river's ``LinearRegression`` and
  ``evolvingfuzzysystems``' eTS on the same stream (prequential: predict, then learn).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from river import linear_model
from timing import median_s

from bench.mackey_glass import embedding, ndei
from streamfuse.learn.neurofuzzy import EvolvingFuzzyRegressor

pytestmark = [
    # the third-party baseline emits pandas/numpy deprecation warnings we cannot fix
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:evolvingfuzzysystems.*"),
]

D = 20
RESULTS: dict[str, float] = {}


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    w = rng.normal(size=D)
    y = np.tanh(X @ w / 4.0) + 0.1 * np.sin(3 * X[:, 0])
    return X, y


def _ours_warm(X, y):
    # a tighter coverage than the default so the model sits at the 30-rule cap (worst case)
    model = EvolvingFuzzyRegressor(max_rules=30, coverage_radius=1.0)
    for i in range(len(X)):
        model.learn_one({f"f{j}": X[i, j] for j in range(D)}, y[i])
    return model


def test_speed_ours(benchmark):
    X, y = _data(1200)
    model = _ours_warm(X[:1000], y[:1000])
    rows = [({f"f{j}": X[i, j] for j in range(D)}, y[i]) for i in range(1000, 1200)]

    def step():
        for x, t in rows:
            model.predict_one(x)
            model.learn_one(x, t)

    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=1)
    per = median_s(benchmark) / len(rows)
    RESULTS["ours_us"] = per * 1e6
    benchmark.extra_info.update(per_sample_us=per * 1e6, rules=model.n_rules)
    print(f"\nours: {per * 1e6:.1f} us/sample (learn+predict, {D} features, "
          f"{model.n_rules} rules)")
    assert model.n_rules <= 30


def test_speed_evolvingfuzzysystems_ets(benchmark):
    efs = pytest.importorskip("evolvingfuzzysystems.eFS")
    X, y = _data(1200)
    model = efs.eTS(r=0.1, omega=1000)
    model.fit(X[:1], y[:1])  # its batch fit fails on numpy 2 beyond one row; evolve is online
    for i in range(1, 300):
        model.evolve(X[i : i + 1], y[i : i + 1])
    rows = [(X[i : i + 1], y[i : i + 1]) for i in range(1000, 1040)]

    def step():
        for x, t in rows:
            model.predict(x)
            model.evolve(x, t)

    benchmark.pedantic(step, rounds=3, iterations=1)
    per = median_s(benchmark) / len(rows)
    RESULTS["ets_us"] = per * 1e6
    benchmark.extra_info.update(per_sample_us=per * 1e6, rules=model.n_rules())
    ratio = RESULTS.get("ours_us")
    print(f"\nevolvingfuzzysystems eTS: {per * 1e6:.1f} us/sample ({model.n_rules()} rules)"
          + (f"; ours is {per * 1e6 / ratio:.0f}x faster" if ratio else ""))
    assert model.n_rules() >= 1


def _prequential(predict, learn, X, y):
    out = np.zeros(len(y))
    for i in range(len(y)):
        out[i] = predict(i)
        learn(i)
    return out


def test_mackey_glass_ndei(benchmark):
    n, skip = 3000, 500
    X, y = embedding(n)
    xs = [{f"x(t-{lag})" if lag else "x(t)": X[i, k] for k, lag in enumerate((18, 12, 6, 0))}
          for i in range(n)]
    figures = {}

    def ours(**kw):
        model = EvolvingFuzzyRegressor(**kw)
        pred = _prequential(lambda i: model.predict_one(xs[i]),
                            lambda i: model.learn_one(xs[i], y[i]), X, y)
        return pred, model

    t0 = time.perf_counter()
    pred, model = benchmark.pedantic(ours, rounds=1, iterations=1)
    figures["streamfuse EvolvingFuzzyRegressor (defaults)"] = ndei(y[skip:], pred[skip:])
    rules = model.n_rules
    pred, _ = ours(radius=0.3)
    figures["streamfuse EvolvingFuzzyRegressor (radius=0.3)"] = ndei(y[skip:], pred[skip:])
    lr = linear_model.LinearRegression()
    pred = _prequential(lambda i: lr.predict_one(xs[i]), lambda i: lr.learn_one(xs[i], y[i]),
                        X, y)
    figures["river LinearRegression"] = ndei(y[skip:], pred[skip:])
    try:
        from evolvingfuzzysystems.eFS import eTS
    except ImportError:
        eTS = None
    if eTS is not None:
        for r in (0.1, 0.3):
            ets = eTS(r=r, omega=1000)
            ets.fit(X[:1], y[:1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = np.concatenate([y[:1], _prequential(
                    lambda i, m=ets: m.predict(X[i + 1 : i + 2])[0],
                    lambda i, m=ets: m.evolve(X[i + 1 : i + 2], y[i + 1 : i + 2]), X[1:],
                    y[1:])])
            figures[f"evolvingfuzzysystems eTS (r={r}, {ets.n_rules()} rules)"] = ndei(
                y[skip:], pred[skip:])
    benchmark.extra_info.update({k: round(v, 4) for k, v in figures.items()})
    print(f"\nMackey-Glass tau=17, {n} samples, NDEI over samples {skip}..{n - 1} "
          f"(ours: {rules} rules, {time.perf_counter() - t0:.1f} s for all models):")
    for name, v in figures.items():
        print(f"  {name:55s} {v:.4f}")
    best_ours = figures["streamfuse EvolvingFuzzyRegressor (defaults)"]
    assert best_ours < figures["river LinearRegression"]
    for name, v in figures.items():
        if name.startswith("evolvingfuzzysystems"):
            assert best_ours <= v * 1.05, name
