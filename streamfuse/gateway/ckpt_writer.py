"""The incremental checkpoint's writer process (:mod:`.snapshot`), run by path, stdlib only,
and the gateway's end of its pipe (:func:`spawn_writer`, :class:`PipeSink`):

    python -I ckpt_writer.py TMP FINAL [JOURNAL_FD ...]

The gateway lowers its priority (nice 10) as soon as it is spawned. Reads the checkpoint body
from stdin, followed by a 16-byte trailer (:data:`TRAILER` and the
body's length, little-endian), and writes ``SFCKPT2`` | sha256(body) | body into ``TMP``
(mode 0600). Only if the trailer is there and right (the gateway did not die or give up
midway): fsyncs the journal descriptors it was handed (the checkpoint records a journal
position), fsyncs the file, renames it to ``FINAL`` and fsyncs the folder. Prints ``ok SIZE``
or ``failed WHY`` and exits 0 or 1; a failed write leaves no file behind.
"""

import contextlib
import fcntl
import hashlib
import os
import struct
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

MAGIC2 = b"SFCKPT2\n"
TRAILER = b"\x00SFEND2\x00"
TAIL = len(TRAILER) + 8
READ = 1 << 20


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write(tmp: str, final: str, journal_fds: list[int]) -> int:
    digest = hashlib.sha256()
    size = 0
    tail = b""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, MAGIC2 + bytes(32))
        while data := os.read(0, READ):
            data = tail + data
            body, tail = data[:-TAIL], data[-TAIL:]
            if body:
                digest.update(body)
                _write_all(fd, body)
                size += len(body)
        if tail[: len(TRAILER)] != TRAILER or struct.unpack("<Q", tail[-8:])[0] != size:
            raise RuntimeError(f"the stream ended without its trailer after {size} bytes")
        os.pwrite(fd, digest.digest(), len(MAGIC2))
        for jfd in journal_fds:
            os.fsync(jfd)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, final)
    dir_fd = os.open(os.path.dirname(final) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


def main(argv: list[str]) -> int:
    try:
        size = write(argv[1], argv[2], [int(x) for x in argv[3:]])
    except BaseException as exc:  # noqa: BLE001 - said on stdout for the gateway's log
        print(f"failed {exc!r}", flush=True)
        return 1
    print(f"ok {size}", flush=True)
    return 0




# ---------------------------------------------------------------------- the gateway's end
#: the writer's pipe: its size asked for, and the most written at a time
PIPE_BYTES = 1 << 20
#: the writer's niceness: each time it woke on the pipe at the loop's own priority it took the
#: loop's core (2 ms steps took 50-110 ms of wall time at load 3-4)
WRITER_NICE = 10
#: pickler writes below this are gathered into pieces of at least this size
SMALL_BYTES = 1 << 16


def spawn_writer(final: Path, tmp: Path, fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """The writer process (``ckpt_writer.py`` run by path: the standard library only, so it
    starts in a few ms). ``subprocess`` starts it with vfork, which copies no page tables."""
    script = Path(__file__)
    live = tuple(fd for fd in fds if _is_open(fd))
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(script), str(tmp), str(final), *map(str, live)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=live, close_fds=True,
    )  # fmt: skip
    with contextlib.suppress(OSError, AttributeError):  # at once: its start-up is work too
        os.setpriority(os.PRIO_PROCESS, proc.pid, WRITER_NICE)
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # Linux: fewer, larger writes
    os.set_blocking(fd, False)
    return proc


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class PipeSink:
    """The pickler's file: what it writes is copied (it hands large array payloads over as
    views of the live arrays) and queued for :meth:`pump`, which writes to the writer
    process's pipe as much as it takes without waiting. A queue of pieces, not one growing
    buffer: a buffer consumed at the front and grown at the back is moved in memory whenever
    it is reallocated, which cost tens of ms once the writer fell behind by 100 MB."""

    __slots__ = ("bytes", "fd", "offset", "pieces", "small")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pieces: deque[bytes] = deque()
        self.small = bytearray()  # small writes gathered into one piece
        self.offset = 0  # of the first piece, already written
        self.bytes = 0

    def write(self, data: Any) -> int:
        with memoryview(data) as view:
            n = view.nbytes
            if n < SMALL_BYTES:
                small = self.small
                small += view
                if len(small) >= SMALL_BYTES:
                    self.pieces.append(bytes(small))
                    small.clear()
            else:
                if self.small:
                    self.pieces.append(bytes(self.small))
                    self.small.clear()
                self.pieces.append(view.tobytes())
        self.bytes += n
        return n

    def add(self, data: bytes) -> None:
        """Queue ``data`` after what was written (not counted in :attr:`bytes`)."""
        if self.small:
            self.pieces.append(bytes(self.small))
            self.small.clear()
        self.pieces.append(data)

    def clear(self) -> None:
        self.pieces.clear()
        self.small.clear()
        self.offset = 0

    def pump(self) -> bool:
        """Write what the pipe takes now; True once nothing is left."""
        if self.small:
            self.pieces.append(bytes(self.small))
            self.small.clear()
        pieces = self.pieces
        while pieces:
            head = pieces[0]
            with memoryview(head) as view:
                try:
                    n = os.write(self.fd, view[self.offset : self.offset + PIPE_BYTES])
                except BlockingIOError:
                    return False
            self.offset += n
            if self.offset >= len(head):
                pieces.popleft()
                self.offset = 0
        return True


if __name__ == "__main__":
    sys.exit(main(sys.argv))
