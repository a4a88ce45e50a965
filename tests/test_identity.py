"""File identity, as a table: every case of the README's delivery guarantees is a row."""

from __future__ import annotations

import pytest

from amebo_logging.ship.identity import HEAD_BYTES, How, Known, changed, compression, decide, file_uid, head_hash

HEAD = head_hash(b'{"first":1}\n')
assert HEAD is not None
KNOWN = Known(uid=file_uid(HEAD, 3), generation=3, offset=500, dev=1, ino=42)

# (case, size, known, held, byte_before, dev/ino, expected how, position, generation)
DECISIONS = [
    ("a head never seen is new, from byte 0", 900, None, False, b"", (1, 42), How.NEW, 0, 0),
    ("a reused inode with another head does not inherit its offset", 900, None, False, b"", (1, 42), How.NEW, 0, 0),
    ("the same file, grown: resumed where it was", 900, KNOWN, False, b"\n", (1, 42), How.RESUMED, 500, 3),
    ("the same file, not grown: resumed", 500, KNOWN, False, b"\n", (1, 42), How.RESUMED, 500, 3),
    ("a renamed file keeps its inode: resumed", 900, KNOWN, False, b"\n", (1, 42), How.RESUMED, 500, 3),
    ("moved to another device, or copytruncate's copy: a copy, continued", 900, KNOWN, False, b"\n", (2, 7),
     How.COPY, 500, 3),
    ("a copy made before the original grew further: all of it was shipped", 300, KNOWN, False, b"", (2, 7),
     How.COPY_SHIPPED, 500, 3),
    ("the same file, shorter than what was shipped: rewritten, a new generation", 300, KNOWN, False, b"", (1, 42),
     How.REWRITTEN, 0, 4),
    ("the byte before the saved position is no line end: rewritten", 900, KNOWN, False, b"x", (1, 42),
     How.REWRITTEN, 0, 4),
    ("a copy whose bytes moved under the position: rewritten", 900, KNOWN, False, b"x", (2, 7), How.REWRITTEN, 0, 4),
    ("another file with this head is being read: it waits", 900, KNOWN, True, b"\n", (2, 7), How.HELD, 500, 3),
]  # fmt: skip


@pytest.mark.parametrize(
    ("size", "known", "held", "before", "where", "how", "position", "generation"),
    [row[1:] for row in DECISIONS],
    ids=[row[0] for row in DECISIONS],
)
def test_what_a_file_being_opened_is(size, known, held, before, where, how, position, generation):
    decision = decide(HEAD, where[0], where[1], size, known, held=held, byte_before=before)
    assert (decision.how, decision.position, decision.generation) == (how, position, generation)
    assert decision.uid == file_uid(HEAD, generation)
    assert bool(decision.reason) == (how is How.REWRITTEN)


def test_a_resumed_file_at_offset_0_needs_no_line_end():
    fresh = Known(file_uid(HEAD, 0), 0, 0, 1, 42)
    assert decide(HEAD, 1, 42, 10, fresh, held=False, byte_before=b"").how is How.RESUMED


OTHER = head_hash(b'{"other":1}\n')

# (case, size, read_pos, head now, line_start, byte before it, pending intact, why or None)
CHECKS = [
    ("grown, nothing touched", 900, 600, HEAD, 580, b"\n", True, None),
    ("at the start, nothing read yet", 0, 0, HEAD, 0, b"", True, None),
    ("truncated below what was read", 100, 600, HEAD, 580, b"\n", True, "its size dropped below what was read"),
    ("emptied", 600, 600, None, 580, b"\n", True, "it was emptied"),
    ("copytruncate, then it regrew past the position", 900, 600, OTHER, 580, b"\n", True, "its first line changed"),
    ("rewritten with the same first line", 900, 600, HEAD, 580, b"x", True,
     "the byte before the read position is no longer a line end"),
    ("the partial line read was overwritten", 900, 600, HEAD, 580, b"\n", False,
     "the line being read was overwritten"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("size", "read_pos", "head_now", "line_start", "before", "intact", "why"),
    [row[1:] for row in CHECKS],
    ids=[row[0] for row in CHECKS],
)
def test_a_file_being_read_still_holds_what_was_read(size, read_pos, head_now, line_start, before, intact, why):
    assert changed(size, read_pos, head_now, HEAD, line_start, before, intact) == why


def test_the_head_is_the_first_line_or_its_first_kilobyte():
    assert head_hash(b'{"a":1}\n{"b":2}\n') == head_hash(b'{"a":1}\n{"c":3}\n')  # only the first line counts
    assert head_hash(b'{"a":1') is None  # not complete yet
    assert head_hash(b"") is None
    long = b"x" * HEAD_BYTES
    assert head_hash(long) == head_hash(long + b"more, never read")  # a long first line: its first KiB
    assert head_hash(long[:-1]) is None


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"BZh91AY", "bzip2"),
        (b"\xfd7zXZ\x00\x00", "xz"),
        (b"\x28\xb5\x2f\xfd\x00", "zstd"),
        (b"PK\x03\x04", "zip"),
        (b'{"a":1}\n', None),
    ],
)
def test_compressed_rotations_are_recognised_by_their_magic_bytes(first, kind):
    assert compression(first) == kind
