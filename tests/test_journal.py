"""The journal's format and writer: round trip, torn tails, damage, rotation, pruning, fsync.

The reader checked here is an independent one (``naive_records``: plain ``struct`` and
``zlib`` over the bytes of the files, as the format's table in :mod:`streamfuse.journal` says),
so the writer is not only read back by its own reader.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import pytest

from streamfuse import journal as fmt
from streamfuse.errors import ConfigError
from streamfuse.gateway.journal import Journal
from streamfuse.types import Prediction


def naive_records(directory: Path) -> list[tuple[int, bytes, bytes]]:
    """Every record with a matching CRC, by position, read with plain struct/zlib."""
    out = []
    for path in sorted(directory.glob("journal-*.wal")):
        start = int(path.name[8:24], 16)
        blob = path.read_bytes()
        assert blob[:8] == b"SFJRNL1\n"
        at = 8
        while at + 9 <= len(blob):
            n, crc = struct.unpack_from("<II", blob, at)
            rec = blob[at + 8 : at + 8 + n]
            if len(rec) != n or zlib.crc32(rec) != crc:
                break
            out.append((start + at, rec[:1], rec[1:]))
            at += 8 + n
    return out


def _prediction(device: str, index: int) -> Prediction:
    return Prediction(device, float(index), index + 2.0, "early", None, {}, "logreg", index=index)


def write_some(j: Journal) -> list[int]:
    positions = [j.accept("p/dev/ecg", b"\x00payload\xff"), j.accept("p/dev/label", b"{}")]
    j.push(positions[0], 12.5)
    j.tick(13.0)
    j.evict(14.0, 300.0)
    j.drop(positions[1])
    j.published(_prediction("dév", 7))
    j.start(fresh=True)
    j.flush()
    return positions


def test_every_kind_round_trips_and_an_independent_reader_agrees(tmp_path: Path) -> None:
    j = Journal(tmp_path, fsync="never")
    j.open()
    r1, r2 = write_some(j)
    j.close()
    got = list(fmt.records(tmp_path))
    assert got == naive_records(tmp_path)
    kinds = [k for _, k, _ in got]
    assert kinds == [b"R", b"R", b"P", b"T", b"E", b"D", b"O", b"S"]
    assert [p for p, _, _ in got][:2] == [r1, r2] == [8, got[1][0]]
    assert fmt.decode_recv(got[0][2]).topic == "p/dev/ecg"
    assert fmt.decode_recv(got[0][2]).payload == b"\x00payload\xff"
    assert fmt.PUSH.unpack(got[2][2]) == (r1, 12.5)
    assert fmt.EVICT.unpack(got[4][2]) == (14.0, 300.0)
    assert fmt.decode_out(got[6][2]) == ("dév", 7, 7.0)


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_a_torn_tail_is_cut_counted_and_appending_goes_on(tmp_path: Path, cut: int) -> None:
    j = Journal(tmp_path, fsync="never")
    j.open()
    write_some(j)
    j.accept("p/dev/acc", b"x" * 30)
    j.close()
    seg = next(tmp_path.glob("journal-*.wal"))
    size = seg.stat().st_size
    os.truncate(seg, size - cut)  # the last record (a 30-byte payload) half written
    again = Journal(tmp_path, fsync="never")
    scan = again.open()
    assert len(scan.torn) == 1 and again.torn_bytes == size - cut - scan.torn[0][1]
    assert seg.stat().st_size == scan.torn[0][1]  # cut at the last good record
    pos = again.accept("p/dev/acc", b"y")
    again.close()
    got = list(fmt.records(tmp_path))
    assert got == naive_records(tmp_path)
    assert [k for _, k, _ in got] == [b"R", b"R", b"P", b"T", b"E", b"D", b"O", b"S", b"R"]
    assert got[-1][0] == pos and fmt.decode_recv(got[-1][2]).payload == b"y"


def test_a_flipped_bit_ends_the_segment_there_without_crashing(tmp_path: Path) -> None:
    j = Journal(tmp_path, fsync="never")
    j.open()
    write_some(j)
    j.close()
    seg = next(tmp_path.glob("journal-*.wal"))
    blob = bytearray(seg.read_bytes())
    third = naive_records(tmp_path)[2][0]  # the P record
    blob[third + 10] ^= 0x40
    seg.write_bytes(bytes(blob))
    scan = fmt.Scan()
    got = list(fmt.records(tmp_path, 0, scan))
    assert [k for _, k, _ in got] == [b"R", b"R"]
    assert scan.torn == [(seg, third, len(blob) - third)]


@pytest.mark.parametrize(
    "content", [b"", b"SFJRNL1", b"not a journal at all", b"SFJRNL1\n\xff\xff\xff\xff" + b"\0" * 9]
)
def test_garbage_segments_are_reported_not_fatal(tmp_path: Path, content: bytes) -> None:
    (tmp_path / fmt.segment_name(0)).write_bytes(content)
    j = Journal(tmp_path, fsync="never")
    scan = j.open()
    assert scan.torn or content == b""
    pos = j.accept("p/d/ecg", b"z")
    j.close()
    assert [fmt.decode_recv(b).payload for p, k, b in fmt.records(tmp_path) if k == b"R"] == [b"z"]
    assert pos >= 8


def test_rotation_keeps_positions_contiguous_and_pruning_spares_the_current(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path, segment_bytes=1 << 16, fsync="never")
    j.open()
    positions = [j.accept("p/d/eeg", bytes([i % 251]) * 5000) for i in range(60)]
    j.close()
    segs = fmt.segments(tmp_path)
    assert len(segs) >= 4
    for (a, pa), (b, _) in zip(segs, segs[1:], strict=False):
        assert a + pa.stat().st_size == b  # the next segment starts where this one ended
    got = list(fmt.records(tmp_path))
    assert got == naive_records(tmp_path) and [p for p, _, _ in got] == positions
    assert all(fmt.decode_recv(b).payload == bytes([i % 251]) * 5000 for i, (_, _, b) in
               enumerate(got))
    j2 = Journal(tmp_path, segment_bytes=1 << 16, fsync="never")
    j2.open()
    removed = j2.prune(positions[-1] + 1)  # everything before the last record
    assert removed == len(segs) - 1
    assert [s for s, _ in fmt.segments(tmp_path)] == [segs[-1][0]]
    assert j2.first == segs[-1][0]
    j2.close()


def test_fsync_policies(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="journal.fsync"):
        Journal(tmp_path, fsync="sometimes")
    always = Journal(tmp_path / "a", fsync="always")
    always.open()
    for _ in range(5):
        always.accept("p/d/ecg", b"1")
    assert always.fsyncs == 5  # one before each acknowledgement
    always.close()
    never = Journal(tmp_path / "n", fsync="never")
    never.open()
    for _ in range(5):
        never.accept("p/d/ecg", b"1")
    assert never.fsyncs == 0
    never.close()
    assert never.fsyncs == 1  # at close
    interval = Journal(tmp_path / "i", fsync="interval", fsync_interval_s=0.01)
    interval.open()
    interval.accept("p/d/ecg", b"1")
    assert interval.fsyncs == 0  # not on the caller's path
    deadline = time.monotonic() + 10
    while interval.fsyncs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert interval.fsyncs >= 1  # the background thread's
    interval.close()


def test_accepted_messages_reach_the_os_before_accept_returns(tmp_path: Path) -> None:
    """What a kill -9 leaves: the file as the OS has it, without the writer's buffer."""
    j = Journal(tmp_path, fsync="never")
    j.open()
    r = j.accept("p/d/ecg", b"acked")
    j.tick(1.0)  # buffered: not yet written (no external effect depends on it yet)
    on_disk = naive_records(tmp_path)  # read while the writer is still open, unflushed
    assert [(p, k) for p, k, _ in on_disk] == [(r, b"R")]
    j.accept("p/d/ecg", b"next")  # writes the buffered tick before itself, in order
    assert [k for _, k, _ in naive_records(tmp_path)] == [b"R", b"T", b"R"]
    j.close()


def test_segments_are_private(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", fsync="never")
    j.open()
    j.close()
    seg = next((tmp_path / "j").glob("journal-*.wal"))
    assert seg.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "j").stat().st_mode & 0o077 == 0
