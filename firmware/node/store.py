"""The store-and-forward queue: every reading reaches the broker or is declared lost, never lost silently.

Each record is bytes numbered (boot, seq), seq = 0, 1, 2, ... within a boot. A record is either
delivered (done() after a PUBACK), or still queued, or covered by a declaration that the node sends
with its telemetry: "full" (the queue overflowed, oldest first) or "reset" (the node restarted
before saving it: any record of the range the receiver has not got is lost).

Where a queued record lives, oldest first:
- flash: segment files root/<n>, each at most seg_bytes, written one batch per open/write/close.
  A frame is length (2 bytes) and crc32 (4 bytes, both little-endian) of the payload, then the
  payload b"<boot> <seq> " + data. Reading a segment stops at the first frame that is torn (power
  cut mid-write) or corrupt, so such a frame is never returned. A segment that had a failed write
  is never appended to again: garbage may sit behind its last good frame. The segments form a ring
  of at most flash_bytes; to make room the oldest segment goes, its unacknowledged records declared
  "full". Fully acknowledged segments are deleted; the read cursor lives in RAM only (after a
  restart the head segment's acknowledged records go out again: duplicates are allowed).
- RAM: the newest records, spilled to flash at `batch` records or `ram_bytes` bytes. While flash
  writes fail they stay; past twice those limits the oldest are dropped ("full").
- The RTC memory blob (when an rtc is given) mirrors the RAM tail after every change, so a soft,
  watchdog or hard reset loses nothing; power loss clears it.

The mark file root/mark (JSON, replaced atomically through mark.tmp) tells the next boot what this
one may lose: {"boot", "floor", "end", "drop"}. Seqs of this boot below floor were delivered, are
on flash or were declared when the mark was written; seqs are reserved up to end, `reserve` at a
time, so the mark (and with it floor) is rewritten once per `reserve` records, not per record
(flash wear). The next boot declares "reset" from floor on, or, when the RTC blob survived, from
its lo (lowered to the first record it restores: those are in RAM only until spilled again). The
range is open-ended (n None): an ended boot numbers nothing more, and while flash could not be
written (full) it may have run past its reserved end. Boots after the last one that left a mark or
blob (a boot that died before writing either; boot numbers count every start) are declared whole,
the most recent _SILENT_BOOTS of them. "drop" holds the declarations not yet reported; while the
mark cannot be written they also ride in the RTC blob, and a power cut that takes them is covered
by the open-ended range from the last mark's floor.

RTC blob: b"FWQ1", crc32 of the rest, boot, lo, end (u32 each), the number of declarations (u16),
the declarations (boot, seq, n u32 (0: open-ended), why u8), then as many RAM frames as fit,
oldest first; lo is the first seq of this boot not covered (not delivered, on flash, declared or
in the blob).

Limit: more than _SILENT_BOOTS boots in a row that cannot write flash at all, then a power loss,
leave the oldest of them undeclared; the receiver still sees their boot numbers missing.
"""

import binascii
import json
import os
import struct
from micropython import const

_HEAD = const(6)  # frame header: payload length (u16) and crc32 (u32)
_RTC_BYTES = const(2048)  # machine.RTC().memory() capacity on the ESP32
_BLOB_HEAD = const(22)  # magic, crc, boot, lo, end, number of declarations
_DROP = const(13)  # one declaration in the blob
_DIGITS = const(10)  # longest number in a frame prefix
_ENOSPC = const(28)
_MAGIC = b"FWQ1"
_WHY = ("full", "reset")
_SILENT_BOOTS = const(8)  # boots without a mark declared at most, the most recent


def _frame(boot, seq, data):
    prefix = ("%d %d " % (boot, seq)).encode()
    crc = binascii.crc32(data, binascii.crc32(prefix))
    return b"".join((struct.pack("<HI", len(prefix) + len(data), crc), prefix, data))


def _num(buf, i):
    """The decimal number at buf[i] ended by a space: (value, index after the space), or (-1, i)."""
    v = 0
    k = i
    while k < len(buf) and k - i < _DIGITS and 48 <= buf[k] <= 57:
        v = v * 10 + buf[k] - 48
        k += 1
    if k == i or k >= len(buf) or buf[k] != 32:
        return -1, i
    return v, k + 1


def _id(buf, i):
    """(boot, seq, where the data starts) of the payload at buf[i], or None if it is not a payload."""
    boot, j = _num(buf, i)
    seq, k = _num(buf, j)
    return (boot, seq, k) if boot >= 0 and seq >= 0 else None


def _read(f, room):
    """The payload of the frame at f's position; None if it is torn, corrupt or longer than room."""
    head = f.read(_HEAD)
    if not head or len(head) < _HEAD:
        return None
    n, crc = struct.unpack("<HI", head)
    if _HEAD + n > room:
        return None
    p = f.read(n)
    if not p or len(p) < n or binascii.crc32(p) != crc or _id(p, 0) is None:
        return None
    return p


def _count(name, v, least):
    if type(v) is not int or v < least:
        raise ValueError("store %s must be an integer >= %d, not %r" % (name, least, v))


class _Reader:
    """Payloads on flash from the read cursor on, oldest first, with one segment file open at a time.

    After next() returned a payload, (i, off) is the position just past it.
    """

    def __init__(self, store, segs):
        self.store = store
        self.segs = segs  # read the first `segs` segments
        self.i = 0
        self.off = store._off
        self.f = None

    def next(self):
        while self.i < self.segs:
            num, end = self.store._segs[self.i]
            if self.off < end:
                try:
                    if self.f is None:
                        self.f = open(self.store._path(num), "rb")
                        self.f.seek(self.off)
                    p = _read(self.f, end - self.off)
                except OSError:
                    p = None
                if p is not None:
                    self.off += _HEAD + len(p)
                    return p
                # No frame where one was written: the medium failed. The rest of this segment is lost.
            self.close()
            self.i += 1
            self.off = 0
        return None

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


def _more(out, run, buf, i, max_n):
    """Append the data of the payload at buf[i] to out if it continues the run [boot, first seq]."""
    if len(out) >= max_n:
        return False
    boot, seq, k = _id(buf, i)
    if not out:
        run[0] = boot
        run[1] = seq
    elif boot != run[0] or seq != run[1] + len(out):
        return False
    out.append(buf[k:])
    return True


class Store:
    def __init__(self, boot, root="q", flash_bytes=262144, ram_bytes=1800, batch=8, seg_bytes=4096,
                 reserve=16, rtc=None):
        _count("boot", boot, 0)
        _count("seg_bytes", seg_bytes, 64)
        _count("flash_bytes", flash_bytes, seg_bytes)
        _count("ram_bytes", ram_bytes, 1)
        _count("batch", batch, 1)
        _count("reserve", reserve, 1)
        self.boot = boot
        self.seq = 0  # the next seq of this boot
        self._root = root
        self._mark = root + "/mark"
        self._flash_bytes = flash_bytes
        self._ram_bytes = ram_bytes
        self._batch = batch
        self._seg_bytes = min(seg_bytes, _HEAD + 0xFFFF)
        self._reserve = reserve
        self._rtc = rtc
        self._blob = bytearray(_RTC_BYTES) if rtc is not None else None
        self._ram = []  # frames, oldest first
        self._ram_n = 0  # their bytes
        self._segs = []  # [number, bytes of good frames], oldest first
        self._off = 0  # read cursor in the oldest segment
        self._total = 0  # bytes of good frames in all segments
        self._flash = 0  # records on flash not acknowledged
        self._next = 1  # number of the next new segment
        self._append = False  # the newest segment may be appended to
        self._end = 0  # seqs of this boot reserved below this
        self._drops = []  # [boot, seq, n, why] not reported yet, oldest first
        self._shown = 0  # how many of them dropped() handed out: never extended after that
        self._dropped = 0  # records this boot dropped because the queue was full
        self._dirty = False  # the mark on flash is out of date (a write failed)
        self._peeked = None  # (boot, seq, n) of the last peek
        self._open()

    def _path(self, num):
        return "%s/%d" % (self._root, num)

    # --- opening -----------------------------------------------------------------------------
    def _open(self):
        try:
            os.mkdir(self._root)
        except OSError:
            pass  # it exists (or the writes will fail, and are handled there)
        last = self._scan()
        mark = self._load_mark()
        blob = self._restore(last)
        if mark is not None:
            self._drops.extend(mark[3])
        if blob is not None:
            for d in blob[3]:
                if d not in self._drops:
                    self._drops.append(d)
        # An ended boot numbers no more records, so its "reset" range is open-ended: past its
        # reserved end too, which it overran if a mark write failed (flash full) before the reset.
        # (Reopened within the same boot, numbering goes on after the reserved end: [lo, end).)
        if mark is not None and (blob is None or blob[0] != mark[0]):
            self._declare(mark[0], mark[1], self._upto(mark[0], mark[2], mark[1]), "reset")
        if blob is not None:
            boot, lo, end = blob[0], blob[1], blob[2]
            if mark is not None and mark[0] == boot:
                end = max(end, mark[2])
            for frame in self._ram:  # restored records are in RAM only until spilled
                b, s, _ = _id(frame, _HEAD)
                if b == boot:
                    lo = min(lo, s)
                    break
            self._declare(boot, lo, self._upto(boot, end, lo), "reset")
        # Boots since the last one that left a trace (boot numbers count every start) wrote no
        # mark: whatever they numbered is declared too.
        traced = [prev[0] for prev in (mark, blob) if prev is not None]
        if traced:
            for boot in range(max(min(traced) + 1, self.boot - _SILENT_BOOTS), self.boot):
                if boot not in traced:
                    self._declare(boot, 0, None, "reset")
        # Reopened within the same boot: go on after everything that boot may have numbered.
        for prev in (mark, blob):
            if prev is not None and prev[0] == self.boot:
                self.seq = max(self.seq, prev[2])
        self._end = self.seq
        self._save_mark()  # the declarations are on flash before anything else can happen
        self._room(0)  # flash_bytes may have shrunk
        self._spill()
        self._mirror()

    def _upto(self, boot, end, lo):
        """How many records from lo a "reset" of `boot` covers: all later ones once it has ended."""
        return end - lo if boot == self.boot else None

    def _scan(self):
        """Find the segments and their good frames: the (boot, seq) of the newest frame, or None."""
        try:
            names = os.listdir(self._root)
        except OSError:
            names = []
        nums = [int(name) for name in names if name.isdigit()]
        nums.sort()
        last = None
        for num in nums:
            end = count = 0
            try:
                f = open(self._path(num), "rb")
                try:
                    while True:
                        p = _read(f, self._seg_bytes - end)
                        if p is None:
                            break
                        end += _HEAD + len(p)
                        count += 1
                        last = p
                finally:
                    f.close()
            except OSError:
                pass
            if count:
                self._segs.append([num, end])
                self._total += end
                self._flash += count
            else:
                self._remove(num)
            self._next = num + 1
        return None if last is None else _id(last, 0)[:2]

    def _load_mark(self):
        """(boot, floor, end, declarations) of the last mark, or None."""
        try:
            with open(self._mark) as f:
                m = json.load(f)
            boot, floor, end, drops = m["boot"], m["floor"], m["end"], m["drop"]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        for v in (boot, floor, end):
            if type(v) is not int:
                return None
        good = []
        for d in drops if type(drops) is list else ():
            if (type(d) is list and len(d) == 4 and type(d[0]) is int and type(d[1]) is int
                    and (type(d[2]) is int or d[2] is None) and d[3] in _WHY):
                good.append(d)
        return boot, floor, end, good

    def _restore(self, last):
        """Take back the RAM tail from a valid RTC blob: (boot, lo, end, declarations), or None.

        Records also on flash (written just before a reset, ahead of the blob) are skipped.
        """
        data = self._rtc.memory() if self._rtc is not None else None
        if not data or len(data) < _BLOB_HEAD or data[:4] != _MAGIC:
            return None
        crc, boot, lo, end, nd = struct.unpack_from("<IIIIH", data, 4)
        if binascii.crc32(memoryview(data)[8:]) != crc or _BLOB_HEAD + nd * _DROP > len(data):
            return None
        drops = []
        i = _BLOB_HEAD
        for _ in range(nd):
            b, s, n, why = struct.unpack_from("<IIIB", data, i)
            drops.append([b, s, n or None, _WHY[why]])  # 0: open-ended
            i += _DROP
        while i + _HEAD <= len(data):
            n = struct.unpack_from("<H", data, i)[0]
            frame = bytes(data[i:i + _HEAD + n])  # bytes, whatever memory() returned: joined later
            ident = _id(frame, _HEAD)
            if len(frame) < _HEAD + n or ident is None:
                break
            if last is None or ident[:2] > last:
                self._ram.append(frame)
                self._ram_n += len(frame)
            i += len(frame)
        return boot, lo, end, drops

    # --- the queue -----------------------------------------------------------------------------
    def add(self, data):
        """Queue one record; its seq."""
        if type(data) is not bytes:
            raise ValueError("a record must be bytes")
        self._retry()
        seq = self.seq
        frame = _frame(self.boot, seq, data)
        if len(frame) > self._seg_bytes:
            raise ValueError("a %d-byte record does not fit a %d-byte segment" % (len(data), self._seg_bytes))
        if seq >= self._end:
            self._end = seq + self._reserve
            self._save_mark()
        self.seq = seq + 1
        self._ram.append(frame)
        self._ram_n += len(frame)
        if (len(self._ram) >= self._batch or self._ram_n >= self._ram_bytes
                or (self._rtc is not None and _BLOB_HEAD + self._ram_n > _RTC_BYTES)):
            self._spill()
            self._trim()
        self._mirror()
        return seq

    def peek(self, max_n):
        """The oldest contiguous run of one boot, at most max_n records: (boot, seq, [data, ...]) or None."""
        out = []
        run = [0, 0]
        r = _Reader(self, len(self._segs))
        try:
            p = r.next() if max_n > 0 else None
            while p is not None and _more(out, run, p, 0, max_n):
                p = r.next()
        finally:
            r.close()
        if p is None:  # flash ended inside the run (or is empty): it may go on in RAM
            for frame in self._ram:
                if not _more(out, run, frame, _HEAD, max_n):
                    break
        if not out:
            self._peeked = None
            return None
        self._peeked = (run[0], run[1], len(out))
        return run[0], run[1], out

    def done(self, n):
        """The first n records of the last peek were acknowledged: forget them.

        Matched by (boot, seq) at the head of the queue, so records dropped or spilled since the
        peek are handled; a record no longer at the head just goes out again later.
        """
        self._retry()
        pk = self._peeked
        self._peeked = None
        if pk is not None and n > 0:
            boot, lo, hi = pk[0], pk[1], pk[1] + min(n, pk[2])
            r = _Reader(self, len(self._segs))
            acked = at_i = at_off = 0
            try:
                p = r.next()
                while p is not None:
                    b, s, _ = _id(p, 0)
                    if b != boot or not lo <= s < hi:
                        break
                    acked += 1
                    at_i, at_off = r.i, r.off
                    p = r.next()
            finally:
                r.close()
            if acked:
                self._flash -= acked
                for _ in range(at_i):
                    self._forget_head()
                self._off = at_off
                if at_off >= self._segs[0][1]:
                    self._forget_head()
            while p is None and self._ram:  # flash is done with: the run went on in RAM
                b, s, _ = _id(self._ram[0], _HEAD)
                if b != boot or not lo <= s < hi:
                    break
                self._ram_n -= len(self._ram.pop(0))
        self._mirror()

    def dropped(self):
        """Declarations not reported yet, oldest first: [(boot, seq, n, why), ...]."""
        self._shown = len(self._drops)
        return [tuple(d) for d in self._drops]

    def reported(self, k):
        """The first k declarations went out: forget them."""
        k = min(k, len(self._drops))
        if k > 0:
            del self._drops[:k]
            self._shown = max(0, self._shown - k)
            self._save_mark()
        else:
            self._retry()

    def spill(self):
        """The RAM tail to flash now (before a planned reset); False if a write failed."""
        self._retry()
        ok = self._spill()
        self._mirror()
        return ok

    def oldest_boot(self):
        """The boot of the oldest record queued, or None when the queue is empty."""
        r = _Reader(self, len(self._segs))
        try:
            p = r.next()
        finally:
            r.close()
        if p is not None:
            return _id(p, 0)[0]
        return _id(self._ram[0], _HEAD)[0] if self._ram else None

    def stats(self):
        return {"ram": len(self._ram), "flash": self._flash, "dropped": self._dropped}

    # --- flash -----------------------------------------------------------------------------------
    def _spill(self):
        ram = self._ram
        while ram:
            tail = self._segs[-1] if self._append else None
            room = self._seg_bytes - (tail[1] if tail else 0)
            k = size = 0
            while k < len(ram) and size + len(ram[k]) <= room:
                size += len(ram[k])
                k += 1
            if k == 0:
                if tail is None:  # can never be written (a bigger frame from the RTC blob)
                    self._lose_ram()
                    self._save_mark()
                self._append = False  # start a new segment
                continue
            self._room(size)
            if tail is not None and not self._append:  # the ring just deleted the tail segment
                continue
            num = tail[0] if tail else self._next
            try:
                f = open(self._path(num), "ab" if tail else "wb")
                try:
                    written = f.write(b"".join(ram[:k]))
                finally:
                    f.close()
                if written is not None and written != size:
                    raise OSError(_ENOSPC)
            except OSError:
                # The records stay in RAM. What reached the file may end in a torn frame, so this
                # segment takes no more writes; a new one ("wb": from scratch) is tried next time.
                self._append = False
                return False
            if tail:
                tail[1] += size
            else:
                self._segs.append([num, size])
                self._next = num + 1
                self._append = True
            self._total += size
            self._flash += k
            del ram[:k]
            self._ram_n -= size
        return True

    def _trim(self):
        """Flash writes failed: past twice the usual RAM tail, the oldest records go ("full")."""
        lost = False
        while self._ram and (len(self._ram) > 2 * self._batch or self._ram_n > 2 * self._ram_bytes):
            self._lose_ram()
            lost = True
        if lost:
            self._save_mark()

    def _lose_ram(self):
        frame = self._ram.pop(0)
        self._ram_n -= len(frame)
        b, s, _ = _id(frame, _HEAD)
        self._declare(b, s, 1, "full")

    def _room(self, size):
        while self._segs and self._total + size > self._flash_bytes:
            self._drop_head()

    def _drop_head(self):
        """Delete the oldest segment, its unacknowledged records declared "full" first."""
        r = _Reader(self, 1)
        try:
            p = r.next()
            while p is not None:
                b, s, _ = _id(p, 0)
                self._declare(b, s, 1, "full")
                self._flash -= 1
                p = r.next()
        finally:
            r.close()
        self._save_mark()
        self._forget_head()

    def _forget_head(self):
        num, end = self._segs.pop(0)
        self._total -= end
        self._off = 0
        if not self._segs:
            self._append = False
        self._remove(num)

    def _remove(self, num):
        try:
            os.remove(self._path(num))
        except OSError:
            pass  # gone already; or it is scanned (and its records sent again) after the next boot

    # --- declarations and the mark -----------------------------------------------------------------
    def _declare(self, boot, seq, n, why):
        """Declare records boot/seq..seq+n-1 (n None: seq and every later one of that boot)."""
        if n is not None and n <= 0:
            return
        if why == "full":
            self._dropped += n
        d = self._drops[-1] if len(self._drops) > self._shown else None
        if (n is not None and d is not None and d[2] is not None and d[0] == boot and d[3] == why
                and d[1] + d[2] == seq):
            d[2] += n  # one declaration per contiguous run
        else:
            self._drops.append([boot, seq, n, why])

    def _save_mark(self):
        floor = self.seq
        for frame in self._ram:
            b, s, _ = _id(frame, _HEAD)
            if b == self.boot:
                floor = s
                break
        text = json.dumps({"boot": self.boot, "floor": floor, "end": self._end, "drop": self._drops})
        tmp = self._mark + ".tmp"
        was = self._dirty
        try:
            f = open(tmp, "w")
            try:
                f.write(text)
            finally:
                f.close()
            os.rename(tmp, self._mark)
        except OSError:
            self._dirty = True  # retried by the next operation
            self._mirror()  # meanwhile the declarations ride in the RTC blob
            return
        self._dirty = False
        if was:
            self._mirror()

    def _retry(self):
        if self._dirty:
            self._save_mark()

    def _mirror(self):
        if self._rtc is None:
            return
        buf = self._blob
        i = _BLOB_HEAD
        nd = 0
        if self._dirty:
            for d in self._drops:
                if i + _DROP > _RTC_BYTES:
                    break
                struct.pack_into("<IIIB", buf, i, d[0], d[1], d[2] or 0, _WHY.index(d[3]))
                i += _DROP
                nd += 1
        lo = self.seq
        fits = True
        for frame in self._ram:
            fits = fits and i + len(frame) <= _RTC_BYTES
            if fits:
                buf[i:i + len(frame)] = frame
                i += len(frame)
                continue
            # Left-out records of older boots were restored at open: that boot's "reset" covers them.
            b, s, _ = _id(frame, _HEAD)
            if b == self.boot:  # the first record of this boot left out
                lo = s
                break
        buf[0:4] = _MAGIC
        struct.pack_into("<IIIH", buf, 8, self.boot, lo, self._end, nd)
        struct.pack_into("<I", buf, 4, binascii.crc32(memoryview(buf)[8:i]))
        self._rtc.memory(memoryview(buf)[:i])
