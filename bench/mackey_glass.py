"""Mackey–Glass series and the usual one-step-ahead embedding, for benchmarks.

dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t), with a = 0.2, b = 0.1, n = 10, tau = 17
(Mackey & Glass, Science 197, 1977), integrated with 4th-order Runge–Kutta (step 0.1, the
delayed term held over each step from the stored history), history x = 1.2 for t <= 0.

The embedding follows the common evolving-fuzzy benchmark (e.g. Angelov & Filev 2004; Jang 1993):
inputs ``[x(t-18), x(t-12), x(t-6), x(t)]``, target ``x(t+6)``, for integer ``t``; on the
6-step grid of the inputs this is one step ahead.
"""

from __future__ import annotations

import numpy as np


def mackey_glass(n: int, tau: float = 17.0, dt: float = 0.1, x0: float = 1.2,
                 a: float = 0.2, b: float = 0.1, p: float = 10.0) -> np.ndarray:
    """``x(t)`` at integer ``t = 0 .. n - 1``."""
    per = int(round(1.0 / dt))
    lag = int(round(tau / dt))
    steps = n * per
    xs = np.empty(steps + lag + 1)
    xs[: lag + 1] = x0

    def f(x: float, xd: float) -> float:
        return a * xd / (1.0 + xd**p) - b * x

    for i in range(lag, lag + steps):
        xd = xs[i - lag]
        xd_next = xs[i - lag + 1]
        xd_mid = 0.5 * (xd + xd_next)
        x = xs[i]
        k1 = f(x, xd)
        k2 = f(x + 0.5 * dt * k1, xd_mid)
        k3 = f(x + 0.5 * dt * k2, xd_mid)
        k4 = f(x + dt * k3, xd_next)
        xs[i + 1] = x + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6.0
    return xs[lag::per][:n]


def embedding(n_samples: int, start: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``X[k] = [x(t-18), x(t-12), x(t-6), x(t)]`` and ``y[k] = x(t+6)``, ``t = start + k``."""
    series = mackey_glass(start + n_samples + 7)
    t = np.arange(start, start + n_samples)
    X = np.stack([series[t - 18], series[t - 12], series[t - 6], series[t]], axis=1)
    y = series[t + 6]
    return X, y


def ndei(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Non-dimensional error index: RMSE divided by the standard deviation of the target."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)) / np.std(y_true))
