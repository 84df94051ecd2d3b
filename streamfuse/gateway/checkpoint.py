"""Checkpoints of the engine's state: write-then-rename, checksummed, newest valid one wins.

A checkpoint is the pickled :class:`~streamfuse.engine.Engine` (models, per-device alignment
and feature state, counters) behind a small header::

    b"SFCKPT1\\n" | sha256(body) (32 bytes) | body (pickle)

Files are named ``engine-<number>.ckpt`` with a growing number, mode 0600. Saving writes
``.<name>.tmp``, fsyncs it, renames it into place and fsyncs the folder, so a crash leaves
either the old set or the old set plus one complete new file, never a torn one. Only the
newest ``keep`` files are kept, and the newest :data:`CORRUPT_KEPT` ``.corrupt`` ones.

**Incremental** checkpoints (the gateway's periodic ones) are :mod:`.snapshot`'s: the same
header, a body of several pickles. **Forked** (:meth:`CheckpointStore.save_in_background`, the
way before them, kept as the bench's baseline): the process forks; the
child holds a copy-on-write image of the state as it was at the fork, pickles and writes it and
exits, while the parent goes on at once (the fork itself costs the copy of the page tables:
milliseconds per GB of heap). The parent reaps the child with :meth:`CheckpointStore.poll`.
Pickling in a thread would not do: the C pickler holds the GIL for the whole dump.

Security: checkpoints are **trusted local files** written by this gateway into a folder only it
should be able to write (pickle can run code while loading). Network payloads are never
unpickled or evaluated: they go through :mod:`streamfuse.codec`, which only parses a fixed
binary frame or JSON.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("streamfuse.gateway.checkpoint")

MAGIC = b"SFCKPT1\n"
_NAME = re.compile(r"^engine-(\d{8})\.ckpt$")
_CORRUPT = re.compile(r"^engine-(\d{8})\.ckpt\.corrupt$")
_TMP = re.compile(r"^\.engine-\d{8}\.ckpt\.tmp$")
#: ``.corrupt`` files kept for inspection (the newest ones)
CORRUPT_KEPT = 3


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
        self._child: tuple[int, Path, Path, int] | None = None
        for stale in self.dir.iterdir():  # a writer killed mid-way leaves its temporary file
            if _TMP.match(stale.name):
                stale.unlink(missing_ok=True)

    def _numbered(self) -> list[tuple[int, Path]]:
        """``(number, path)`` of each checkpoint file, newest first."""
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found, reverse=True)

    def files(self) -> list[Path]:
        """Checkpoint files, newest first."""
        return [p for _, p in self._numbered()]

    def _next(self) -> tuple[Path, Path]:
        existing = self._numbered()
        number = existing[0][0] + 1 if existing else 1
        final = self.dir / f"engine-{number:08d}.ckpt"
        return final, self.dir / f".{final.name}.tmp"

    def _write(self, body: bytes, final: Path, tmp: Path) -> None:
        """Write ``body`` behind the header into ``tmp`` (mode 0600), fsync, rename, fsync dir."""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as fh:
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

    def _prune(self) -> None:
        for old in self.files()[self.keep :]:
            old.unlink(missing_ok=True)
        corrupt = sorted(
            (p for p in self.dir.iterdir() if _CORRUPT.match(p.name)), reverse=True
        )
        for old in corrupt[CORRUPT_KEPT:]:
            old.unlink(missing_ok=True)

    def save(self, state: Any) -> Path:
        """Pickle ``state`` into a new checkpoint (write-then-rename) and prune old ones."""
        self.wait()
        body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        final, tmp = self._next()
        self._write(body, final, tmp)
        self.saved += 1
        self._prune()
        log.info("checkpoint %s saved (%d bytes)", final, len(body))
        return final

    # ------------------------------------------------------------------ background
    @property
    def busy(self) -> bool:
        """A background save is running."""
        return self._child is not None

    def save_in_background(self, state: Any, *, fsync_first: tuple[int, ...] = ()) -> Path:
        """Fork; the child fsyncs the descriptors ``fsync_first`` (the journal, whose position
        the state records), pickles ``state`` into the next checkpoint and exits. Returns the
        file it will write (saved inline where there is no fork). One at a time: call only when
        not :attr:`busy`."""
        if not hasattr(os, "fork"):
            return self.save(state)
        final, tmp = self._next()
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: fork with threads
            pid = os.fork()
        if pid == 0:  # the child: no logging (a lock may be held by a thread that is not here)
            code = 1
            try:
                os.close(read_end)
                for fd in fsync_first:
                    try:
                        os.fsync(fd)
                    except OSError:  # a rotated segment closed since (fsynced before that)
                        pass
                gc.disable()  # nothing to collect before exiting; leave the pages shared
                body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
                body_len = len(body)
                self._write(body, final, tmp)
                del body
                self._prune()  # unlinking a large old file takes the file system a while
                os.write(write_end, f"ok {body_len}".encode())
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported through the pipe
                try:
                    os.write(write_end, f"failed {exc!r}"[:2000].encode())
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        os.close(write_end)
        self._child = (pid, final, tmp, read_end)
        return final

    def poll(self, *, block: bool = False) -> tuple[Path, bool, str] | None:
        """Reap a finished background save: ``(file, ok, message)``; None while it runs (or
        when there is none)."""
        if self._child is None:
            return None
        pid, final, tmp, read_end = self._child
        try:
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 1 << 8
        if done == 0:
            return None
        self._child = None
        try:
            message = os.read(read_end, 4096).decode(errors="replace")
        finally:
            os.close(read_end)
        ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and message.startswith("ok")
        if ok:
            self.saved += 1
            log.info("checkpoint %s saved in the background (%s bytes)", final, message[3:])
        else:
            tmp.unlink(missing_ok=True)
            message = message or f"the writer process ended with status {status}"
            log.error("checkpoint %s failed: %s", final, message)
        return final, ok, message

    def wait(self) -> tuple[Path, bool, str] | None:
        """Wait for a background save to end (see :meth:`poll`)."""
        return self.poll(block=True)

    @staticmethod
    def read(path: Path) -> tuple[Any, str]:
        """Verify and unpickle one checkpoint, whole (``SFCKPT1``) or incremental
        (``SFCKPT2``, :mod:`.snapshot`); raise ValueError saying what is wrong."""
        from .snapshot import MAGIC2, load_body

        blob = path.read_bytes()
        if not blob.startswith((MAGIC, MAGIC2)):
            raise ValueError("bad magic (not a streamfuse checkpoint)")
        digest, body = blob[len(MAGIC) : len(MAGIC) + 32], blob[len(MAGIC) + 32 :]
        if len(digest) != 32 or hashlib.sha256(body).digest() != digest:
            raise ValueError("checksum mismatch (truncated or altered)")
        try:
            if blob.startswith(MAGIC2):
                return load_body(body), hashlib.sha256(body).hexdigest()
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
                self._prune()
                continue
            return Restored(state, path, sha, tuple(skipped))
        if skipped:
            log.error("no usable checkpoint in %s; starting with a fresh engine", self.dir)
        return None


def huge_page_hint(logger: logging.Logger) -> None:
    """Say once how to make a checkpoint's fork shorter, where it applies (Linux, transparent
    huge pages on request, glibc not yet told to ask for them)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as fh:
            mode = fh.read()
    except OSError:
        return
    if "[never]" in mode or "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    logger.info(
        "checkpoints fork the process, which copies its page tables: start the gateway with "
        "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 for 2 MB pages and a several times shorter "
        "fork (docs/durability.md)"
    )


def unusable(state: Any, engine: Any) -> str | None:
    """Why a restored checkpoint ``state`` cannot replace the running ``engine`` (a phrase for
    the log), or None: its classes have changed since it was written (their layout, read from
    the classes themselves), or it holds no engine, or one of another configuration."""
    from ..engine import Engine
    from ..state_layout import layout_changes

    saved = state.get("engine") if isinstance(state, dict) else None
    changed = layout_changes(state.get("layout"), saved) if saved is not None else []
    if changed:
        return f"holds state of classes that have changed since ({'; '.join(changed)})"
    if (
        not isinstance(saved, Engine)
        or saved.prefix != engine.prefix
        or saved.config != engine.config
    ):
        return ("does not match this gateway's configuration (prefix, modalities, windows or "
                "model)")
    return None
