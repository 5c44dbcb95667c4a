"""ADXL345 accelerometer, modelled at register level for the I2C bus.

Samples are produced lazily: on every bus access the model works out how many output-data-rate
periods have passed on the board clock since the last access and pushes that many samples, drawn
from `signal(t0, n, rate_hz)`, into a 33-entry queue (the 32-level FIFO plus the output register).
So a driver that polls too slowly sees overruns and lost samples exactly where a real chip would
lose them, and a chip in standby produces nothing.

Speed (a FIFO drain reads DATAX0..DATAZ1 once a sample, thousands of times a window): the signal
must be a function of the sample instant alone (as physics.Machine and any function of t are),
so the model asks for a block of upcoming samples at once (as many as the last drain took, within
BLOCK_MIN..BLOCK_MAX) and encodes it with numpy; each queue entry is the sample's six data-register
bytes, which a 6-byte burst from DATAX0 returns as they are. A change of format, offsets or rate,
a restart of measurement, or a change in the Machine's mode history drops the block: what is
queued stays as it was encoded. `read_ahead = False` asks the signal for each burst's samples
only, as the model did before; the bytes are the same (tests/sim/test_sim_fastpaths.py).

Register facts follow the ADXL345 datasheet (Rev. E): DEVID 0xE5, BW_RATE reset 0x0A (100 Hz),
POWER_CTL measure bit, DATA_FORMAT range/FULL_RES/justify, little-endian two's complement data,
FIFO modes bypass/FIFO/stream/trigger, FIFO_STATUS entries, INT_SOURCE DATA_READY/watermark/overrun.
Not modelled: tap/activity/free-fall detection, self-test, sleep/auto-sleep sample rates, the INT
pins and the trigger event (trigger mode behaves like stream mode until a trigger that never comes).
"""

import math
import time
from collections import deque

import numpy as np

from .i2cbus import I2CDevice

DEVID_VALUE = 0xE5

REG_DEVID = 0x00
REG_OFSX = 0x1E
REG_BW_RATE = 0x2C
REG_POWER_CTL = 0x2D
REG_INT_SOURCE = 0x30
REG_DATA_FORMAT = 0x31
REG_DATAX0 = 0x32
REG_DATAZ1 = 0x37
REG_FIFO_CTL = 0x38
REG_FIFO_STATUS = 0x39

MEASURE = 0x08
SLEEP = 0x04
FULL_RES = 0x08
JUSTIFY = 0x04

INT_DATA_READY = 0x80
INT_WATERMARK = 0x02
INT_OVERRUN = 0x01

MODE_BYPASS, MODE_FIFO, MODE_STREAM, MODE_TRIGGER = 0, 1, 2, 3

FIFO_LEVELS = 32
QUEUE_MAX = FIFO_LEVELS + 1     # the output register holds one more sample
_READ_ONLY = (REG_DEVID, REG_INT_SOURCE, REG_FIFO_STATUS) + tuple(range(REG_DATAX0, REG_DATAZ1 + 1))
_EPS = 1e-9
BLOCK_MIN = 64      # the least a block reads ahead
BLOCK_MAX = 8192    # the most (a long drain takes several blocks)
_ZERO6 = bytes(6)
_BYTE = tuple(bytes((v,)) for v in range(256))  # one-register reads, without making a bytearray


def rate_hz(code):
    """Output data rate for a BW_RATE rate code (0x0F = 3200 Hz, halving per step)."""
    return 3200.0 / (1 << (15 - (code & 0x0F)))


def _still(t0, n, rate):
    return [0.0] * n, [0.0] * n, [1.0] * n


def _block_source(signal):
    """The vectorised twin of a Machine's acceleration (an array (3, n) at once), else None."""
    owner = getattr(signal, "__self__", None)
    block = getattr(owner, "acceleration_block", None)
    if block is not None and getattr(signal, "__name__", None) == "acceleration":
        return block
    return None


class ADXL345(I2CDevice):
    def __init__(self, addr=0x53, clock=None, signal=None):
        super().__init__(addr)
        self.clock = clock or time.monotonic
        self.signal = signal or _still
        self._signal_block = _block_source(self.signal)
        self.samples_made = 0     # samples converted by the chip (kept or lost), for tests
        self.samples_lost = 0
        self.signal_calls = 0     # signal() calls, for tests and benches
        self.read_ahead = True    # False: ask the signal for each burst's samples only (the slow path)
        self.power_on()

    # ----- state -----
    def power_on(self):
        """Register reset values and empty FIFO, as after power-up."""
        self.regs = bytearray(0x40)
        self.regs[REG_DEVID] = DEVID_VALUE
        self.regs[REG_BW_RATE] = 0x0A
        self._q = deque()         # each sample as its 6 data-register bytes
        self._last = _ZERO6
        self._overrun = False
        self._running = False
        self._base = 0.0
        self._k = 0
        self._seen = None         # a clock reading _update found nothing new at (same state since)
        self._drop_block()

    @property
    def rate_hz(self):
        return rate_hz(self.regs[REG_BW_RATE])

    @property
    def fifo_mode(self):
        return self.regs[REG_FIFO_CTL] >> 6

    def _measuring(self):
        p = self.regs[REG_POWER_CTL]
        return bool(p & MEASURE) and not p & SLEEP

    def _start(self):
        # First sample one output period after measurement starts.
        self._running = True
        self._base = self.clock() + 1.0 / self.rate_hz
        self._k = 0
        self._drop_block()

    def _update(self):
        if not self._running:
            return
        now = self.clock()
        if now == self._seen:
            return  # no time passed since a look that found nothing due, and no write since
        rate = self.rate_hz
        elapsed = now - self._base
        if elapsed < -_EPS:
            self._seen = now
            return
        total = int(math.floor(elapsed * rate + _EPS)) + 1
        new = total - self._k
        if new <= 0:
            self._seen = now
            return
        self.samples_made += new
        mode = self.fifo_mode
        cap = 1 if mode == MODE_BYPASS else QUEUE_MAX
        q = self._q
        if mode == MODE_FIFO:
            # FIFO mode keeps the oldest samples and refuses new ones once full.
            take = min(new, cap - len(q))
            if take > 0:
                self._push(self._k, take)
            if take < new:
                self.samples_lost += new - take
                self._overrun = True
        else:
            # Bypass/stream keep the newest; older unread samples are overwritten.
            take = min(new, cap)
            self._push(self._k + new - take, take)
            lost = new - take
            while len(q) > cap:
                q.popleft()
                lost += 1
            if lost:
                self.samples_lost += lost
                self._overrun = True
        self._k = total
        self._seen = now

    # ----- samples -----
    def _drop_block(self):
        self._blk0 = 0            # sample number of _blk[0]
        self._blk = []            # encoded samples made ahead (6 bytes each)
        self._blk_key = None      # what they were made under: timing, format, offsets, the Machine's modes
        self._next_k = None       # the sample after the last one pushed (a drain streams on from it)
        self._run = 0             # samples pushed since the drain's stream last broke
        self._hint = BLOCK_MIN    # how far to read ahead: the last stream's length

    def _push(self, k0, n):
        """Samples k0 .. k0+n-1 into the queue: from the block made ahead, else from a new block."""
        regs = self.regs
        owner = getattr(self._signal_block, "__self__", None)
        key = (self._base, regs[REG_BW_RATE], regs[REG_DATA_FORMAT], regs[REG_OFSX], regs[REG_OFSX + 1],
               regs[REG_OFSX + 2], len(owner._segments) if owner is not None else None)
        blk, b0 = self._blk, self._blk0
        if key != self._blk_key or not (b0 <= k0 and k0 + n <= b0 + len(blk)):
            streaming = k0 == self._next_k
            if streaming:
                self._run += n
            else:  # a catch-up after a pause: a new stream, as long as the last one probably
                self._hint = min(BLOCK_MAX, max(BLOCK_MIN, self._run + 64))
                self._run = n
            size = n if not self.read_ahead else max(n, self._hint if not streaming else BLOCK_MIN * 4)
            blk, b0 = self._blk, self._blk0 = self._make(k0, size), k0
            self._blk_key = key
        else:
            self._run += n
        self._q.extend(blk[k0 - b0:k0 - b0 + n])
        self._next_k = k0 + n

    def _make(self, k0, size):
        """Samples k0 .. k0+size-1, each as the 6 bytes DATAX0..DATAZ1 would read."""
        rate = self.rate_hz
        t0 = self._base + k0 / rate
        self.signal_calls += 1
        if self._signal_block is not None:
            g = self._signal_block(t0, size, rate)
        else:
            g = np.array(self.signal(t0, size, rate), dtype=float).reshape(3, size)
        raw = self._encode(g).T.astype("<u2").tobytes()  # x, y, z little-endian, sample by sample
        return np.frombuffer(raw, dtype="V6").tolist()  # 6 bytes a sample, as bytes objects

    def _encode(self, g):
        """Register values (16-bit, as an int array (3, n)) for accelerations g (array (3, n), in g)."""
        fmt = self.regs[REG_DATA_FORMAT]
        rng = fmt & 0x03
        if fmt & FULL_RES:
            lsb_per_g, bits = 256.0, 10 + rng
        else:
            lsb_per_g, bits = 256.0 / (1 << rng), 10
        hi = (1 << (bits - 1)) - 1
        lo = -(1 << (bits - 1))
        # Datasheet: at 1600/3200 Hz in full-res or +-2 g 10-bit mode the output LSB is always 0.
        drop_lsb = (self.regs[REG_BW_RATE] & 0x0F) >= 0x0E and (fmt & FULL_RES or rng == 0)
        shift = 16 - bits if fmt & JUSTIFY else 0
        ofs = np.array([[self._signed8(self.regs[REG_OFSX + i]) * 0.0156] for i in range(3)])
        # rint rounds half to even, as round() does; the offset is added first, as the chip does.
        c = np.clip(np.rint((g + ofs) * lsb_per_g), lo, hi).astype(np.int64)
        if drop_lsb:
            c &= ~1
        return (c << shift) & 0xFFFF

    @staticmethod
    def _signed8(v):
        return v - 256 if v & 0x80 else v

    # ----- derived registers -----
    def _entries(self):
        return min(FIFO_LEVELS, max(0, len(self._q) - 1))

    def _int_source(self):
        v = 0
        if self._q:
            v |= INT_DATA_READY
        if self._entries() >= (self.regs[REG_FIFO_CTL] & 0x1F):
            v |= INT_WATERMARK
        if self._overrun:
            v |= INT_OVERRUN
        return v

    # ----- bus interface -----
    def read(self, reg, n):
        if self.clock() != self._seen:  # else _update would find nothing new
            self._update()
        if reg == REG_DATAX0 and n == 6:
            # A FIFO drain's burst: the sample's bytes as they are, and the same effects as below.
            q = self._q
            if q:
                self._last = q.popleft()
            self._overrun = False
            return self._last
        if n == 1:  # the drain's polls (FIFO_STATUS, INT_SOURCE) and plain registers below the data
            if reg == REG_FIFO_STATUS:
                return _BYTE[self._entries()]
            if reg == REG_INT_SOURCE:
                return _BYTE[self._int_source()]
            if reg < REG_DATAX0:
                return _BYTE[self.regs[reg]]
        data = self._q[0] if self._q else self._last
        out = bytearray(n)
        popped = False
        for i in range(n):
            r = (reg + i) & 0xFF
            if REG_DATAX0 <= r <= REG_DATAZ1:
                out[i] = data[r - REG_DATAX0]
                popped = True
            elif r == REG_INT_SOURCE:
                out[i] = self._int_source()
            elif r == REG_FIFO_STATUS:
                out[i] = self._entries()   # FIFO_TRIG never set: no trigger events modelled
            elif r < len(self.regs):
                out[i] = self.regs[r]
        if popped:
            # Any read of the data registers pops one FIFO level and clears the data interrupts.
            if self._q:
                self._last = self._q.popleft()
            self._overrun = False
        return bytes(out)

    def write(self, reg, data):
        self._update()
        self._seen = None
        for i, v in enumerate(data):
            r = (reg + i) & 0xFF
            if r >= len(self.regs) or r in _READ_ONLY:
                continue
            before = self._measuring()
            old = self.regs[r]
            self.regs[r] = v
            if r == REG_POWER_CTL:
                now_on = self._measuring()
                if now_on and not before:
                    self._start()
                elif before and not now_on:
                    self._running = False
            elif r == REG_BW_RATE and (old & 0x0F) != (v & 0x0F) and self._running:
                self._start()
            elif r == REG_FIFO_CTL and (v >> 6) == MODE_BYPASS and (old >> 6) != MODE_BYPASS:
                # Entering bypass empties the FIFO; only the newest sample stays in the output register.
                while len(self._q) > 1:
                    self._q.popleft()
                self._overrun = False
