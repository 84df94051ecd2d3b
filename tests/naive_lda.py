"""A plain-Python diagonal LDA with a learnt temperature, written from the description in
``streamfuse/learn/lda.py``'s docstring (loops and ``math`` only), to check the model against."""

from __future__ import annotations

import math


class NaiveDiagonalLDA:
    def __init__(self, var_floor: float = 1e-6, temperature_lr: float = 0.05) -> None:
        self.var_floor = var_floor
        self.temperature_lr = temperature_lr
        self.classes: list[str] = []
        self.values: dict[str, dict[str, list[float]]] = {}  # class -> feature -> values
        self.seen: dict[str, int] = {}
        self.log_a: float | None = None

    def discriminants(self, x: dict[str, float]) -> list[float]:
        k = len(self.classes)
        out = []
        for c in self.classes:
            total = 0.0
            for f, v in x.items():
                if not math.isfinite(v):
                    continue
                per_class = [self.values[cc].get(f, []) for cc in self.classes]
                if any(len(vals) == 0 for vals in per_class):
                    continue
                means = [sum(vals) / len(vals) for vals in per_class]
                ss = sum(
                    sum((u - m) ** 2 for u in vals)
                    for vals, m in zip(per_class, means, strict=True)
                )
                dof = sum(len(vals) for vals in per_class) - k
                var = ss / dof if dof > 0 else 0.0
                floor = self.var_floor * (sum(m * m for m in means) / k + 1e-12)
                var = max(var, floor)
                mu = means[self.classes.index(c)]
                total += (v * mu - 0.5 * mu * mu) / var
            n_all = sum(self.seen.values())
            total += math.log((self.seen[c] + 1.0) / (n_all + k))
            out.append(total)
        return out

    def proba(self, d: list[float]) -> list[float]:
        a = math.exp(self.log_a) if self.log_a is not None else 1.0
        top = max(d)
        e = [math.exp(a * (v - top)) for v in d]
        s = sum(e)
        return [v / s for v in e]

    def learn_one(self, x: dict[str, float], y: str) -> None:
        if y not in self.values:
            self.classes.append(y)
            self.values[y] = {}
            self.seen[y] = 0
        if self.log_a is None:
            self.log_a = -math.log(max(1, len(x)))
        if len(self.classes) > 1:
            d = self.discriminants(x)
            p = self.proba(d)
            mean_d = sum(d) / len(d)
            a = math.exp(self.log_a)
            grad = a * sum(
                (pk - (1.0 if c == y else 0.0)) * (dk - mean_d)
                for pk, dk, c in zip(p, d, self.classes, strict=True)
            )
            self.log_a -= self.temperature_lr * max(-1.0, min(1.0, grad))
        for f, v in x.items():
            if math.isfinite(v):
                self.values[y].setdefault(f, []).append(v)
        self.seen[y] += 1

    def predict_proba_one(self, x: dict[str, float]) -> dict[str, float]:
        if not self.classes:
            return {}
        if len(self.classes) == 1:
            return {self.classes[0]: 1.0}
        return dict(zip(self.classes, self.proba(self.discriminants(x)), strict=True))
