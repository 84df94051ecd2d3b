"""The incremental checkpoint's writer process (:mod:`.snapshot`), run by path, stdlib only:

    python -I ckpt_writer.py TMP FINAL [JOURNAL_FD ...]

The gateway lowers its priority (nice 10) as soon as it is spawned. Reads the checkpoint body
from stdin, followed by a 16-byte trailer (:data:`TRAILER` and the
body's length, little-endian), and writes ``SFCKPT2`` | sha256(body) | body into ``TMP``
(mode 0600). Only if the trailer is there and right (the gateway did not die or give up
midway): fsyncs the journal descriptors it was handed (the checkpoint records a journal
position), fsyncs the file, renames it to ``FINAL`` and fsyncs the folder. Prints ``ok SIZE``
or ``failed WHY`` and exits 0 or 1; a failed write leaves no file behind.
"""

import hashlib
import os
import struct
import sys

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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
