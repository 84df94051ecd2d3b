"""Argument types for the command line: numbers with a lower bound and a message that says so."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def bounded(
    kind: Callable[[str], N], minimum: float, *, strict: bool, what: str
) -> Callable[[str], N]:
    """A parser for ``argparse`` ``type=``: ``kind(text)`` that must be ``> minimum``
    (``strict``) or ``>= minimum``; anything else is refused with "expected <what>"."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_float = bounded(float, 0, strict=True, what="a positive number")
positive_int = bounded(int, 0, strict=True, what="a positive number")
shard_count = bounded(int, 0, strict=False, what="0 (no shards) or a positive number")
