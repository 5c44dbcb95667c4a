"""Cases for node.store; MicroPython subset (run on CPython and in the VM).

Each case works in its own directory under DATA (the runner's data directory; writable in the VM
too), emptied first. Faults come from replacing the store module's `open` and `os` (module globals
are looked up before builtins in both Pythons): writes that fail with ENOSPC, a write torn part-way,
and a power cut after a given number of file operations (tearing the write in progress).
"""
import json
import os

from node import store
from node.store import Store

DATA = None  # set by the runner: a directory holding FILES
FILES = {"keep.txt": "the store cases make their directories here\n"}

_open = open
_os = os
_ENOSPC = 28


def _fresh(name):
    """DATA/name, which does not exist (left over from an earlier run: removed)."""
    root = DATA + "/" + name
    try:
        names = os.listdir(root)
    except OSError:
        return root
    for n in names:
        os.remove(root + "/" + n)
    os.rmdir(root)
    return root


def _rec(i):
    return b"rec-%d" % i


def _fixed(boot, seq):
    """A record whose frame is exactly 26 bytes (payload 20) for one-digit boots and seqs < 100."""
    head = "%d %d " % (boot, seq)
    name = "%d-%d" % (boot, seq)
    return (name + "." * (20 - len(head) - len(name))).encode()


def _drain(st, max_n=100):
    """Everything left, as the receiver would get it: [(boot, seq, data), ...]."""
    got = []
    while True:
        pk = st.peek(max_n)
        if pk is None:
            return got
        boot, seq, recs = pk
        for i in range(len(recs)):
            got.append((boot, seq + i, recs[i]))
        st.done(len(recs))


def _mark(root):
    with _open(root + "/mark") as f:
        return json.load(f)


def _read(path):
    with _open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with _open(path, "wb") as f:
        f.write(data)


def _frame_starts(data):
    """Offsets of the frames in a segment file's bytes."""
    starts = []
    i = 0
    while i + 6 <= len(data):
        starts.append(i)
        i += 6 + data[i] + 256 * data[i + 1]
    return starts


class RTC:
    """machine.RTC().memory(); `flash` (a _Flash) may cut the power just before a write."""

    def __init__(self, flash=None):
        self.data = b""
        self.flash = flash

    def memory(self, data=None):
        if data is None:
            return self.data
        assert len(data) <= 2048, len(data)
        if self.flash is not None and self.flash.tick():
            raise _Cut()
        self.data = bytes(data)


class _Cut(Exception):
    """The power went (or the watchdog bit) in the middle of the store's work."""


class _Flash:
    """The store's file system with faults; counts writes. Installed by _Patch."""

    def __init__(self, seed=1):
        self.x = seed
        self.segments = False  # writes to segment files fail (ENOSPC)
        self.all = False  # every write fails (ENOSPC), the mark's too
        self.tear = False  # segment writes stop at 3/4 of their bytes, then fail
        self.cut = None  # file operations left before the power goes
        self.marks = 0  # mark.tmp opened for writing
        self.seg_opens = 0  # segment files opened for writing
        self.writes = 0  # write() calls

    def rand(self, n):
        """0 <= int < n from a small LCG (MicroPython's random differs from CPython's)."""
        self.x = (self.x * 75 + 74) % 65537
        return self.x * n // 65537

    def tick(self):
        """One more file operation: True when the power goes now."""
        if self.cut is None:
            return False
        self.cut -= 1
        return self.cut < 0

    def open(self, path, mode="r"):
        if self.tick():
            raise _Cut()
        if "w" not in mode and "a" not in mode:
            return _open(path, mode)
        seg = path.split("/")[-1].isdigit()
        if path.endswith("/mark.tmp"):
            self.marks += 1
        if seg:
            self.seg_opens += 1
        if self.all or (seg and self.segments):
            raise OSError(_ENOSPC)
        return _File(self, _open(path, mode), seg and self.tear)


class _File:
    def __init__(self, flash, f, tear):
        self.flash = flash
        self.f = f
        self.tear = tear

    def write(self, data):
        self.flash.writes += 1
        if self.flash.tick():  # the power goes part-way through this write
            self.f.write(data[:self.flash.rand(len(data) + 1)])
            self.close()
            raise _Cut()
        if self.tear:
            self.f.write(data[:len(data) * 3 // 4])
            raise OSError(_ENOSPC)
        return self.f.write(data)

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


class _OS:
    def __init__(self, flash):
        self.flash = flash

    def _op(self):
        if self.flash.tick():
            raise _Cut()

    def listdir(self, path):
        self._op()
        return _os.listdir(path)

    def mkdir(self, path):
        self._op()
        if self.flash.all:
            raise OSError(_ENOSPC)
        _os.mkdir(path)

    def remove(self, path):
        self._op()
        _os.remove(path)

    def rename(self, old, new):
        self._op()
        _os.rename(old, new)


class _Patch:
    """with _Patch(flash): the store uses flash's open and os."""

    def __init__(self, flash):
        self.flash = flash

    def __enter__(self):
        store.open = self.flash.open
        store.os = _OS(self.flash)
        return self.flash

    def __exit__(self, *exc):
        store.open = _open
        store.os = _os


def _covered(key, said):
    for d in said:
        if d[0] == key[0] and d[1] <= key[1] and (d[2] is None or key[1] < d[1] + d[2]):
            return True
    return False


def test_peek_is_ordered_and_contiguous_across_flash_and_ram():
    root = _fresh("order")
    st = Store(1, root, batch=4)
    for i in range(10):
        assert st.add(_rec(i)) == i
    assert st.seq == 10 and st.boot == 1
    assert st.stats() == {"ram": 2, "flash": 8, "dropped": 0}
    assert sorted(os.listdir(root)) == ["1", "mark"]  # created the directory; both batches in one segment
    assert st.peek(100) == (1, 0, [_rec(i) for i in range(10)])
    assert st.peek(3) == (1, 0, [_rec(0), _rec(1), _rec(2)])
    st.done(3)
    assert st.stats()["flash"] == 5
    assert st.peek(6) == (1, 3, [_rec(i) for i in range(3, 9)])  # from flash on into RAM
    st.done(6)
    assert st.stats() == {"ram": 1, "flash": 0, "dropped": 0}
    assert os.listdir(root) == ["mark"]  # the acknowledged segment is gone
    assert st.peek(100) == (1, 9, [_rec(9)])
    st.done(1)
    assert st.peek(100) is None and st.peek(0) is None
    assert st.stats() == {"ram": 0, "flash": 0, "dropped": 0}


def test_a_run_is_one_boot():
    root = _fresh("boots")
    st = Store(1, root, batch=2, reserve=4)
    for i in range(4):
        st.add(_rec(i))
    assert st.stats() == {"ram": 0, "flash": 4, "dropped": 0}
    st = Store(2, root, batch=2, reserve=4)
    for i in range(3):
        st.add(_rec(100 + i))
    # the mark of boot 1 was written at seq 0: all it reserved is declared, though on flash
    assert st.dropped() == [(1, 0, None, "reset")]
    assert st.stats() == {"ram": 1, "flash": 6, "dropped": 0}  # "dropped" counts "full" only
    assert st.peek(100) == (1, 0, [_rec(i) for i in range(4)])
    st.done(4)
    assert st.peek(100) == (2, 0, [_rec(100), _rec(101), _rec(102)])  # flash, then RAM


def test_done_forgets_only_what_the_last_peek_returned():
    root = _fresh("done")
    st = Store(1, root, batch=3)
    for i in range(7):
        st.add(_rec(i))  # 0..5 on flash, 6 in RAM
    assert st.peek(5) == (1, 0, [_rec(i) for i in range(5)])
    st.done(2)  # partial
    assert st.peek(100) == (1, 2, [_rec(i) for i in range(2, 7)])
    st.done(0)
    st.done(3)  # no peek since the last done: nothing
    assert st.peek(2) == (1, 2, [_rec(2), _rec(3)])
    st.done(10)  # more than peeked: only those
    assert st.stats() == {"ram": 1, "flash": 2, "dropped": 0}
    assert st.peek(100) == (1, 4, [_rec(4), _rec(5), _rec(6)])
    st.add(_rec(7))  # between the peek and its done
    st.done(3)
    assert st.peek(100) == (1, 7, [_rec(7)])
    st.add(_rec(8))
    st.add(_rec(9))  # spills 7..9 after the peek: done still finds record 7, now on flash
    st.done(1)
    assert st.stats() == {"ram": 0, "flash": 2, "dropped": 0}
    assert _drain(st) == [(1, 8, _rec(8)), (1, 9, _rec(9))]


def test_bad_input_is_one_clear_error():
    root = _fresh("bad")
    st = Store(1, root, seg_bytes=64)
    for record, words in (("text", "must be bytes"), (b"x" * 60, "does not fit a 64-byte segment")):
        try:
            st.add(record)
            raise AssertionError("taken: %r" % (record,))
        except ValueError as exc:
            assert words in str(exc), str(exc)
    assert st.seq == 0 and st.stats()["ram"] == 0
    for kw, words in (({"batch": 0}, "batch must be an integer >= 1"),
                      ({"flash_bytes": 1000}, "flash_bytes must be an integer >= 4096"),
                      ({"reserve": True}, "reserve must be an integer")):
        try:
            Store(1, root, **kw)
            raise AssertionError("taken: %r" % (kw,))
        except ValueError as exc:
            assert words in str(exc), str(exc)


def _boot_one(root, rtc=None):
    """Boot 1 with batch 5, reserve 8: records 0..9 on flash, 10 and 11 in RAM; mark floor 5, end 16."""
    st = Store(1, root, batch=5, reserve=8, rtc=rtc)
    for i in range(12):
        st.add(_rec(i))
    assert st.stats() == {"ram": 2, "flash": 10, "dropped": 0}
    # the mark was written at seq 0 (floor 0) and at seq 8, when 5..7 were in RAM
    assert _mark(root) == {"boot": 1, "floor": 5, "end": 16, "drop": []}
    return st


def test_a_reset_without_rtc_declares_from_floor_on():
    root = _fresh("reset")
    _boot_one(root)
    st = Store(2, root, batch=5, reserve=8)  # RAM lost (power loss)
    assert st.dropped() == [(1, 5, None, "reset")]  # 10, 11 lost; boot 1 is over: open-ended
    assert st.stats() == {"ram": 0, "flash": 10, "dropped": 0}
    assert _mark(root) == {"boot": 2, "floor": 0, "end": 0, "drop": [[1, 5, None, "reset"]]}
    assert _drain(st) == [(1, i, _rec(i)) for i in range(10)]
    for i in range(3):
        st.add(_rec(20 + i))  # RAM only: end 8
    st = Store(3, root, batch=5, reserve=8)
    assert st.dropped() == [(1, 5, None, "reset"), (2, 0, None, "reset")]  # kept until reported
    assert st.stats()["dropped"] == 0  # nothing dropped for a full queue
    st.reported(1)
    # boot 3 numbered nothing, but an ended boot is declared from its floor on whatever it did: its
    # mark may be stale (a full flash lets it number past its reserved end)
    st = Store(4, root, batch=5, reserve=8)
    assert st.dropped() == [(2, 0, None, "reset"), (3, 0, None, "reset")]
    st.reported(5)
    assert st.dropped() == []
    assert Store(5, root).dropped() == [(4, 0, None, "reset")]


def test_a_power_cut_while_flash_is_full_is_declared_whole():
    root = _fresh("fullcut")
    st = Store(1, root, batch=2, reserve=4)
    for i in range(3):
        st.add(_rec(i))  # 0, 1 on flash, 2 in RAM; the mark written at seq 0 (floor 0, end 4)
    with _Patch(_Flash()) as flash:
        flash.all = True  # no flash write succeeds: not the mark, not a segment
        for i in range(3, 40):
            st.add(_rec(i))  # past the reserved end; the oldest RAM records are dropped ("full")
        assert st.seq == 40 and st.stats()["dropped"] > 0
        Store(2, root, batch=2, reserve=4).add(_rec(100))  # power cut, then a boot that writes nothing
        Store(3, root, batch=2, reserve=4)  # and another
    st = Store(4, root, batch=2, reserve=4)  # power cut; flash writable again
    # boot 1 from its last floor on (its "full" declarations were in RAM only), boots 2 and 3 whole
    assert st.dropped() == [(1, 0, None, "reset"), (2, 0, None, "reset"), (3, 0, None, "reset")]
    said = st.dropped()
    for key in [(1, i) for i in range(40)] + [(2, 0)]:
        assert _covered(key, said), key
    assert _drain(st) == [(1, i, _rec(i)) for i in range(2)]


def test_a_reset_with_the_rtc_blob_loses_nothing():
    root = _fresh("rtc")
    rtc = RTC()
    _boot_one(root, rtc)
    st = Store(2, root, batch=5, reserve=8, rtc=rtc)  # watchdog: RTC memory kept
    # 10 and 11 come back (and are spilled at once); the declaration starts at them, as they were in
    # RAM only until that spill, and is open-ended, as boot 1 is over
    assert st.dropped() == [(1, 10, None, "reset")]
    assert st.stats() == {"ram": 0, "flash": 12, "dropped": 0}
    assert _drain(st) == [(1, i, _rec(i)) for i in range(12)]
    # a blob that fails its crc is ignored: same as power loss
    root = _fresh("rtc")
    rtc = RTC()
    _boot_one(root, rtc)
    rtc.data = rtc.data[:30] + bytes([rtc.data[30] ^ 1]) + rtc.data[31:]
    st = Store(2, root, batch=5, reserve=8, rtc=rtc)
    assert st.dropped() == [(1, 5, None, "reset")]
    assert _drain(st) == [(1, i, _rec(i)) for i in range(10)]
    # reset after a spill reached flash but before the blob was rewritten: no duplicates
    root = _fresh("rtc")
    rtc = RTC()
    st = Store(1, root, batch=5, reserve=8, rtc=rtc)
    for i in range(4):
        st.add(_rec(i))
    before = rtc.data
    st.add(_rec(4))  # spills 0..4
    rtc.data = before  # still holding 0..3
    st = Store(2, root, batch=5, reserve=8, rtc=rtc)
    assert st.dropped() == [(1, 4, None, "reset")]
    assert _drain(st) == [(1, i, _rec(i)) for i in range(5)]


def test_restored_records_keep_their_boot_and_seq():
    root = _fresh("keep")
    rtc = RTC()
    st = Store(1, root, batch=8, reserve=4, rtc=rtc)
    for i in range(3):
        st.add(_rec(i))
    _write(root + "/9", b"")  # an empty segment file (a write that never got going)
    with _Patch(_Flash()) as flash:
        flash.segments = True  # the spill at open fails: the records stay in RAM (and the blob)
        st = Store(2, root, batch=8, reserve=4, rtc=rtc)
        assert st.stats() == {"ram": 3, "flash": 0, "dropped": 0}
        assert st.dropped() == [(1, 0, None, "reset")]
        st.add(_rec(100))
        st = Store(3, root, batch=8, reserve=4, rtc=rtc)  # another watchdog reset
        assert st.stats()["ram"] == 4
        flash.segments = False
        assert st.spill() is True
    assert st.stats() == {"ram": 0, "flash": 4, "dropped": 0}
    assert st.peek(10) == (1, 0, [_rec(0), _rec(1), _rec(2)])
    st.done(3)
    assert st.peek(10) == (2, 0, [_rec(100)])
    assert st.dropped() == [(1, 0, None, "reset"), (2, 0, None, "reset")]
    assert "9" not in os.listdir(root)  # empty segment file: removed when scanned


def test_a_tail_too_big_for_the_rtc_is_spilled_first():
    root = _fresh("bigtail")
    rtc = RTC()  # asserts every blob is at most 2048 bytes
    kw = {"batch": 100, "ram_bytes": 100000, "reserve": 100, "rtc": rtc}
    big = b"x" * 300  # a 310-byte frame (311 from seq 10 on)
    st = Store(1, root, **kw)
    for i in range(6):
        st.add(big)
    assert st.stats()["ram"] == 6 and len(rtc.data) == 22 + 6 * 310
    st.add(big)  # the blob would not hold 7: all spilled
    assert st.stats() == {"ram": 0, "flash": 7, "dropped": 0} and len(rtc.data) == 22
    with _Patch(_Flash()) as flash:
        flash.segments = True  # while they cannot be spilled, the blob holds what fits
        for i in range(7, 14):
            st.add(big)
        assert st.stats()["ram"] == 7 and len(rtc.data) == 22 + 3 * 310 + 3 * 311
    st = Store(2, root, **kw)  # watchdog: 7..12 come back, 13 does not, and is declared
    assert st.dropped() == [(1, 7, None, "reset")]
    assert _drain(st) == [(1, i, big) for i in range(13)]


def test_reopened_in_the_same_boot_numbering_goes_on():
    root = _fresh("same")
    st = Store(7, root, batch=2, reserve=4)
    for i in range(5):
        st.add(_rec(i))  # 0..3 on flash, 4 in RAM, reserved up to 8
    st = Store(7, root, batch=2, reserve=4)
    assert st.seq == 8 and st.dropped() == [(7, 4, 4, "reset")]  # the same boot: up to its reserved end
    assert st.add(_rec(8)) == 8


def test_a_torn_last_frame_is_never_returned():
    root = _fresh("torn")
    st = Store(1, root, batch=3)
    for i in range(3):
        st.add(_rec(i))
    seg = _read(root + "/1")
    starts = _frame_starts(seg)
    assert len(starts) == 3
    for cut in range(starts[2], len(seg)):
        root = _fresh("torn2")
        os.mkdir(root)
        _write(root + "/1", seg[:cut])
        st = Store(2, root, batch=1)
        assert st.stats() == {"ram": 0, "flash": 2, "dropped": 0}, cut
        assert st.peek(10) == (1, 0, [_rec(0), _rec(1)]), cut
        st.add(b"after")  # goes to a new segment, not behind the torn frame
        assert sorted(os.listdir(root)) == ["1", "2", "mark"]
        st = Store(3, root)
        assert _drain(st) == [(1, 0, _rec(0)), (1, 1, _rec(1)), (2, 0, b"after")], cut
    root = _fresh("torn2")
    os.mkdir(root)
    _write(root + "/1", seg[:starts[1] - 1])  # nothing whole left: the file goes
    st = Store(2, root)
    assert st.peek(10) is None and os.listdir(root) == ["mark"]


def test_a_corrupt_frame_ends_its_segment():
    root = _fresh("crc")
    st = Store(1, root, batch=2, seg_bytes=64)
    for i in range(4):
        st.add(_fixed(1, i))  # two segments of two 26-byte frames
    assert sorted(os.listdir(root)) == ["1", "2", "mark"]
    seg = _read(root + "/1")
    second = _frame_starts(seg)[1]
    # a flipped bit in: the payload, a prefix digit, the crc, the length
    for at in (len(seg) - 1, second + 6, second + 3, second):
        root = _fresh("crc2")
        os.mkdir(root)
        _write(root + "/1", seg[:at] + bytes([seg[at] ^ 4]) + seg[at + 1:])
        _write(root + "/2", _read(DATA + "/crc/2"))
        st = Store(2, root)
        assert st.stats()["flash"] == 3, at
        assert _drain(st) == [(1, 0, _fixed(1, 0)), (1, 2, _fixed(1, 2)), (1, 3, _fixed(1, 3))], at
    root = _fresh("crc2")
    os.mkdir(root)
    _write(root + "/1", bytes([seg[0] ^ 1]) + seg[1:])  # the first frame's length
    assert Store(2, root).peek(10) is None


def test_ring_overflow_drops_the_oldest_and_declares_exact_runs():
    root = _fresh("ring")
    st = Store(1, root, batch=2, ram_bytes=10000, seg_bytes=104, flash_bytes=312)  # 4 frames/segment, 3 segments
    for i in range(20):
        st.add(_fixed(1, i))
    # segments 1 (0..3) and 2 (4..7) made room: one declaration for the contiguous run
    assert st.dropped() == [(1, 0, 8, "full")]
    assert st.stats() == {"ram": 0, "flash": 12, "dropped": 8}
    assert sorted(os.listdir(root)) == ["3", "4", "5", "mark"]
    assert _mark(root)["drop"] == [[1, 0, 8, "full"]]  # persisted at once
    assert st.peek(100) == (1, 8, [_fixed(1, i) for i in range(8, 20)])
    for i in range(20, 24):
        st.add(_fixed(1, i))  # segment 3 (8..11) goes
    # a declaration handed out by dropped() is never extended: the next run is a new one
    assert st.dropped() == [(1, 0, 8, "full"), (1, 8, 4, "full")]
    st.reported(1)
    assert st.dropped() == [(1, 8, 4, "full")]
    assert st.peek(2) == (1, 12, [_fixed(1, 12), _fixed(1, 13)])
    st.done(2)
    for i in range(24, 28):
        st.add(_fixed(1, i))  # segment 4 (12..15) goes: only 14 and 15 were not acknowledged
    assert st.dropped() == [(1, 8, 4, "full"), (1, 14, 2, "full")]
    assert st.stats() == {"ram": 0, "flash": 12, "dropped": 14}
    assert _drain(st) == [(1, i, _fixed(1, i)) for i in range(16, 28)]
    assert _mark(root)["drop"] == [[1, 8, 4, "full"], [1, 14, 2, "full"]]


def test_ring_declares_one_run_per_boot():
    root = _fresh("ring2")
    rtc = RTC()
    kw = {"batch": 2, "ram_bytes": 10000, "seg_bytes": 104, "flash_bytes": 312, "reserve": 4, "rtc": rtc}
    st = Store(1, root, **kw)
    st.add(_fixed(1, 0))  # in RAM and the blob
    st = Store(2, root, **kw)  # restores (1, 0) and spills it into segment 1
    for i in range(14):
        st.add(_fixed(2, i))  # segment 1 fills up with (1, 0), (2, 0..2); 3..13 in 3 more segments
    assert sorted(os.listdir(root)) == ["2", "3", "4", "mark"]  # segment 1 went
    full = [d for d in st.dropped() if d[3] == "full"]
    assert full == [(1, 0, 1, "full"), (2, 0, 3, "full")]
    assert st.peek(100) == (2, 3, [_fixed(2, i) for i in range(3, 14)])


def test_enospc_keeps_the_records_then_drops_the_oldest():
    root = _fresh("nospc")
    with _Patch(_Flash()) as flash:
        st = Store(1, root, batch=2, reserve=100)
        flash.segments = True
        for i in range(4):
            st.add(_rec(i))
        assert st.stats() == {"ram": 4, "flash": 0, "dropped": 0}
        assert st.spill() is False
        st.add(_rec(4))  # over 2 * batch: the oldest goes
        assert st.stats() == {"ram": 4, "flash": 0, "dropped": 1}
        st.add(_rec(5))
        assert st.dropped() == [(1, 0, 2, "full")]
        assert _mark(root)["drop"] == [[1, 0, 2, "full"]]
        assert st.peek(100) == (1, 2, [_rec(i) for i in range(2, 6)])
        st.done(1)
        flash.segments = False
        st.add(_rec(6))
        assert st.stats() == {"ram": 0, "flash": 4, "dropped": 2}
    assert _drain(st) == [(1, i, _rec(i)) for i in range(3, 7)]
    # the trimming leaves a gap: a run ends there
    root = _fresh("nospc")
    with _Patch(_Flash()) as flash:
        st = Store(1, root, batch=2, reserve=100)
        st.add(_rec(0))
        st.add(_rec(1))  # on flash
        flash.segments = True
        for i in range(2, 9):
            st.add(_rec(i))  # 2..4 dropped, 5..8 in RAM
        assert st.dropped() == [(1, 2, 3, "full")]
        assert st.peek(100) == (1, 0, [_rec(0), _rec(1)])
        st.done(2)
        assert st.peek(100) == (1, 5, [_rec(i) for i in range(5, 9)])


def test_a_failed_write_never_reads_back_half_a_frame():
    root = _fresh("half")
    with _Patch(_Flash()) as flash:
        st = Store(1, root, batch=2, reserve=100)
        st.add(_rec(0))
        st.add(_rec(1))  # segment 1
        flash.tear = True
        st.add(_rec(2))
        st.add(_rec(3))  # the append writes (2) whole and half of (3), then fails
        assert st.stats() == {"ram": 2, "flash": 2, "dropped": 0}
        flash.tear = False
        st.add(_rec(4))  # a new segment, not behind the garbage
        assert sorted(os.listdir(root)) == ["1", "2", "mark"]
        assert st.stats() == {"ram": 0, "flash": 5, "dropped": 0}
        assert st.peek(100) == (1, 0, [_rec(i) for i in range(5)])
    st = Store(2, root)
    # segment 1 now also shows the whole (2) of the failed write, not the half (3)
    assert st.stats()["flash"] == 6
    assert st.peek(100) == (1, 0, [_rec(0), _rec(1), _rec(2)])
    st.done(3)  # acknowledges the copy of (2) at the head of segment 2 too
    assert st.stats()["flash"] == 2
    assert _drain(st) == [(1, 3, _rec(3)), (1, 4, _rec(4))]


def test_declarations_ride_in_the_rtc_blob_while_the_mark_cannot_be_written():
    root = _fresh("unwritable")
    rtc = RTC()
    with _Patch(_Flash()) as flash:
        st = Store(1, root, batch=2, reserve=4, rtc=rtc)
        flash.all = True  # nothing can be written, the mark neither
        for i in range(6):
            st.add(_rec(i))  # 0, 1 dropped ("full"); 2..5 in RAM; seq reserved up to 8 in RAM only
        assert st.dropped() == [(1, 0, 2, "full")]
        assert _mark(root) == {"boot": 1, "floor": 0, "end": 0, "drop": []}
        flash.all = False
        st = Store(2, root, batch=2, reserve=4, rtc=rtc)  # a watchdog reset
    assert st.dropped() == [(1, 0, 2, "full"), (1, 2, None, "reset")]
    assert _mark(root)["drop"] == [[1, 0, 2, "full"], [1, 2, None, "reset"]]
    assert _drain(st) == [(1, i, _rec(i)) for i in range(2, 6)]
    # a later successful mark write takes them over; the blob stops carrying them
    st.add(_rec(0))
    assert len(rtc.data) == 22 + 6 + len(b"2 0 ") + len(_rec(0))


def test_mark_is_written_once_per_reserve_and_a_batch_once():
    root = _fresh("wear")
    with _Patch(_Flash()) as flash:
        st = Store(1, root, batch=4, reserve=16)
        assert flash.marks == 1  # opening
        st.add(_rec(0))
        assert flash.marks == 2  # reserves 0..15
        for i in range(1, 16):
            st.add(_rec(i))
        assert flash.marks == 2
        st.add(_rec(16))
        assert flash.marks == 3
        for i in range(17, 48):
            st.add(_rec(i))
        assert flash.marks == 4
        assert _mark(root) == {"boot": 1, "floor": 32, "end": 48, "drop": []}
        # one open and one write per batch of 4 (plus one write per mark)
        assert flash.seg_opens == 12 and flash.writes == 12 + 4
        assert st.stats() == {"ram": 0, "flash": 48, "dropped": 0}


def _fuzz(seed, boots, with_rtc):
    """A node that adds, sends, gets acknowledgements and resets at random points, with random
    flash faults. Checks every record the receiver gets; returns what happened."""
    root = _fresh("fuzz")
    flash = _Flash(seed)
    rtc = RTC(flash) if with_rtc else None
    kw = {"batch": 3, "ram_bytes": 120, "seg_bytes": 128, "flash_bytes": 384, "reserve": 4, "rtc": rtc}
    added = {}  # (boot, seq) -> data, once add() returned
    maybe = {}  # add() was interrupted: the record may or may not show up
    got = {}  # what the receiver got
    said = []  # declarations the receiver got
    resets = [0, 0]  # power losses, resets keeping the RTC memory
    # Known limit: while nothing can be written, declarations (and seqs past the reserved end) live
    # in the RTC memory only, so no power loss from then until a boot has written its mark again
    # (and without an RTC no such faults at all).
    unsafe = False

    def receive(b, s, data):
        assert data == added.get((b, s), maybe.get((b, s))), (b, s)
        got[(b, s)] = data

    with _Patch(flash):
        for boot in range(1, boots + 1):
            flash.cut = flash.rand(250)
            try:
                st = Store(boot, root, **kw)
                unsafe = unsafe and flash.all
                for _ in range(40):
                    a = flash.rand(20)
                    if a < 9:
                        key = (boot, st.seq)
                        maybe[key] = (b"%d.%d." % key) * (1 + flash.rand(4))
                        assert st.add(maybe[key]) == key[1]
                        added[key] = maybe.pop(key)
                    elif a < 15:
                        pk = st.peek(1 + flash.rand(6))
                        if pk is not None:
                            b, s, recs = pk
                            k = len(recs) if flash.rand(4) else flash.rand(len(recs) + 1)  # received
                            for i in range(k):
                                receive(b, s + i, recs[i])
                            st.done(k if flash.rand(4) else flash.rand(k + 1))  # acknowledged
                    elif a < 17:
                        ds = st.dropped()
                        k = flash.rand(len(ds) + 1)
                        said.extend(ds[:k])
                        st.reported(flash.rand(k + 1))
                    elif a == 17:
                        flash.segments = not flash.segments
                    elif a == 18 and with_rtc and flash.rand(3) == 0:
                        flash.all = not flash.all
                        unsafe = unsafe or flash.all
                    else:
                        st.spill()
            except _Cut:
                pass
            flash.cut = None
            if with_rtc and (unsafe or flash.rand(2)):
                resets[1] += 1  # watchdog or soft reset
            else:
                if with_rtc:
                    rtc.data = b""
                resets[0] += 1
            flash.all = flash.all and flash.rand(2) == 0
        flash.segments = flash.all = False
        st = Store(boots + 1, root, **kw)
        for b, s, data in _drain(st):
            receive(b, s, data)
        said.extend(st.dropped())
    assert st.stats()["ram"] == 0 and st.stats()["flash"] == 0
    lost = 0
    for key in added:
        if key not in got:
            assert _covered(key, said), key
            lost += 1
    whys = [d[3] for d in said]
    return {"added": len(added), "got": len(got), "lost": lost, "full": whys.count("full"),
            "reset": whys.count("reset"), "power": resets[0], "watchdog": resets[1]}


def test_no_record_is_lost_silently_across_random_resets():
    r = _fuzz(11, 30, True)
    assert r["added"] > 300 and r["got"] > 200 and r["lost"] > 10, r
    assert r["full"] > 2 and r["reset"] > 10 and r["power"] > 5 and r["watchdog"] > 5, r


def test_no_record_is_lost_silently_without_an_rtc():
    r = _fuzz(5, 20, False)
    assert r["added"] > 200 and r["got"] > 100 and r["lost"] > 10 and r["full"] > 2 and r["reset"] > 10, r
