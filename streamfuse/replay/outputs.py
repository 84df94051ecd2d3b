"""Where ``streamfuse replay`` writes predictions: JSON lines, CSV or Parquet, by suffix.

JSON lines hold each prediction's wire payload (docs/wire-format.md) exactly; CSV and Parquet
hold one flat row per prediction: the scalar fields, ``p_<class>`` for the published
probabilities, ``<level>.p_<class>`` for each level's and the ``metrics`` keys as columns.
Parquet needs pyarrow (``pip install 'streamfuse[parquet]'``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..types import Prediction

JSON_LINES = (".jsonl", ".ndjson", ".json")
FORMATS = (*JSON_LINES, ".csv", ".parquet")
_SCALARS = ("device", "index", "t_start", "t_end", "device_t_start", "device_t_end", "level",
            "label", "model", "closed_at")  # fmt: skip


def check_out(path: Path) -> None:
    """Refuse an output path before any work: unknown suffix, a directory, parquet without
    pyarrow."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(
            f"--out {path}: unknown format {suffix or '(no suffix)'!r}; use one of "
            f"{', '.join(FORMATS)}"
        )
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a file name ending {suffix}")
    if not path.parent.is_dir():
        raise ConfigError(f"--out {path}: the folder {path.parent} does not exist")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--out *.parquet needs pyarrow: pip install 'streamfuse[parquet]' "
                "(or write .jsonl or .csv)"
            ) from None


def flat_row(p: Prediction) -> dict[str, Any]:
    """One prediction as a flat row (the CSV and Parquet columns)."""
    doc = p.to_json_dict()
    row: dict[str, Any] = {k: doc.get(k) for k in _SCALARS}
    row["modalities"] = ",".join(p.modalities)
    for cls, prob in p.proba.items():
        row[f"p_{cls}"] = prob
    for level, probs in p.levels.items():
        for cls, prob in probs.items():
            row[f"{level}.p_{cls}"] = prob
    for key, value in p.metrics.items():
        row[f"metrics.{key}"] = value if value == value else None  # NaN: empty
    return row


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    seen = dict.fromkeys(_SCALARS)
    seen["modalities"] = None
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def write_jsonl(predictions: Iterable[Prediction], fh: IO[str]) -> None:
    for p in predictions:
        fh.write(json.dumps(p.to_json_dict(), sort_keys=True) + "\n")


def write_predictions(predictions: Sequence[Prediction], path: Path) -> None:
    """Write ``predictions`` to ``path`` in the format its suffix names."""
    suffix = path.suffix.lower()
    if suffix in JSON_LINES:
        with path.open("w", encoding="utf-8") as fh:
            write_jsonl(predictions, fh)
        return
    rows = [flat_row(p) for p in predictions]
    columns = _columns(rows)
    if suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [row.get(c) for row in rows] for c in columns})
    pq.write_table(table, path)
