"""Checkpoints of the engine's state: write-then-rename, checksummed, newest valid one wins.

A checkpoint is the pickled :class:`~streamfuse.engine.Engine` (models, per-device alignment
and feature state, counters) behind a small header::

    b"SFCKPT1\\n" | sha256(body) (32 bytes) | body (pickle)

Files are named ``engine-<number>.ckpt`` with a growing number. Saving writes
``.<name>.tmp``, fsyncs it, renames it into place and fsyncs the folder, so a crash leaves
either the old set or the old set plus one complete new file, never a torn one. Only the
newest ``keep`` files are kept.

Security: checkpoints are **trusted local files** written by this gateway into a folder only it
should be able to write (pickle can run code while loading). Network payloads are never
unpickled or evaluated: they go through :mod:`streamfuse.codec`, which only parses a fixed
binary frame or JSON.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("streamfuse.gateway.checkpoint")

MAGIC = b"SFCKPT1\n"
_NAME = re.compile(r"^engine-(\d{8})\.ckpt$")


@dataclass(frozen=True, slots=True)
class Restored:
    """What :meth:`CheckpointStore.load_latest` found."""

    state: Any
    path: Path
    body_sha256: str
    skipped: tuple[tuple[Path, str], ...]  # corrupt newer files and why


def state_digest(obj: Any) -> str:
    """A fingerprint of learned state: sha256 of ``obj`` pickled after one pickle round trip.

    The round trip makes the bytes canonical: a live object can share or not share string and
    tuple objects in ways a restored copy does not, which changes pickle's memo references but
    not the state; after one round trip the encoding is a fixed point.
    """
    once = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return hashlib.sha256(pickle.dumps(once, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


class CheckpointStore:
    """A folder of numbered checkpoints.

    Parameters
    ----------
    directory
        Created if missing (mode 0700).
    keep
        How many newest checkpoints to keep (at least 2, so a corrupt newest one has a fallback).
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        self.dir = Path(directory)
        self.keep = max(2, int(keep))
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"checkpoint folder {self.dir} cannot be created: {exc}") from exc
        self.saved = 0
        self.corrupt = 0

    def _numbered(self) -> list[tuple[int, Path]]:
        """``(number, path)`` of each checkpoint file, newest first."""
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found, reverse=True)

    def files(self) -> list[Path]:
        """Checkpoint files, newest first."""
        return [p for _, p in self._numbered()]

    def save(self, state: Any) -> Path:
        """Pickle ``state`` into a new checkpoint (write-then-rename) and prune old ones."""
        body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        existing = self._numbered()
        number = existing[0][0] + 1 if existing else 1
        final = self.dir / f"engine-{number:08d}.ckpt"
        tmp = self.dir / f".{final.name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            fh.write(hashlib.sha256(body).digest())
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.saved += 1
        for old in self.files()[self.keep :]:
            old.unlink(missing_ok=True)
        log.info("checkpoint %s saved (%d bytes)", final, len(body))
        return final

    @staticmethod
    def read(path: Path) -> tuple[Any, str]:
        """Verify and unpickle one checkpoint; raise ValueError saying what is wrong."""
        blob = path.read_bytes()
        if not blob.startswith(MAGIC):
            raise ValueError("bad magic (not a streamfuse checkpoint)")
        digest, body = blob[len(MAGIC) : len(MAGIC) + 32], blob[len(MAGIC) + 32 :]
        if len(digest) != 32 or hashlib.sha256(body).digest() != digest:
            raise ValueError("checksum mismatch (truncated or altered)")
        try:
            return pickle.loads(body), hashlib.sha256(body).hexdigest()
        except Exception as exc:  # a trusted file that still does not load
            raise ValueError(f"cannot unpickle: {exc!r}") from exc

    def load_latest(self) -> Restored | None:
        """The newest checkpoint that verifies; corrupt newer ones are reported and skipped.

        Returns ``None`` when there is no usable checkpoint (the gateway then starts fresh).
        """
        skipped: list[tuple[Path, str]] = []
        for path in self.files():
            try:
                state, sha = self.read(path)
            except (OSError, ValueError) as exc:
                self.corrupt += 1
                log.error("checkpoint %s is unusable (%s); trying the previous one", path, exc)
                skipped.append((path, str(exc)))
                try:  # keep it for inspection, out of the way of the next start
                    path.rename(path.with_name(path.name + ".corrupt"))
                except OSError:
                    pass
                continue
            return Restored(state, path, sha, tuple(skipped))
        if skipped:
            log.error("no usable checkpoint in %s; starting with a fresh engine", self.dir)
        return None
