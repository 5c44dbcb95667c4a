"""ADXL345 accelerometer, modelled at register level for the I2C bus.

Samples are produced lazily: on every bus access the model works out how many output-data-rate
periods have passed on the board clock since the last access and pushes that many samples, drawn
from `signal(t0, n, rate_hz)`, into a 33-entry queue (the 32-level FIFO plus the output register).
So a driver that polls too slowly sees overruns and lost samples exactly where a real chip would
lose them, and a chip in standby produces nothing.

Register facts follow the ADXL345 datasheet (Rev. E): DEVID 0xE5, BW_RATE reset 0x0A (100 Hz),
POWER_CTL measure bit, DATA_FORMAT range/FULL_RES/justify, little-endian two's complement data,
FIFO modes bypass/FIFO/stream/trigger, FIFO_STATUS entries, INT_SOURCE DATA_READY/watermark/overrun.
Not modelled: tap/activity/free-fall detection, self-test, sleep/auto-sleep sample rates, the INT
pins and the trigger event (trigger mode behaves like stream mode until a trigger that never comes).
"""

import math
import time
from collections import deque

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


def rate_hz(code):
    """Output data rate for a BW_RATE rate code (0x0F = 3200 Hz, halving per step)."""
    return 3200.0 / (1 << (15 - (code & 0x0F)))


def _still(t0, n, rate):
    return [0.0] * n, [0.0] * n, [1.0] * n


class ADXL345(I2CDevice):
    def __init__(self, addr=0x53, clock=None, signal=None):
        super().__init__(addr)
        self.clock = clock or time.monotonic
        self.signal = signal or _still
        self.samples_made = 0     # samples converted by the chip (kept or lost), for tests
        self.samples_lost = 0
        self.power_on()

    # ----- state -----
    def power_on(self):
        """Register reset values and empty FIFO, as after power-up."""
        self.regs = bytearray(0x40)
        self.regs[REG_DEVID] = DEVID_VALUE
        self.regs[REG_BW_RATE] = 0x0A
        self._q = deque()
        self._last = (0, 0, 0)
        self._overrun = False
        self._running = False
        self._base = 0.0
        self._k = 0

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

    def _update(self):
        if not self._running:
            return
        rate = self.rate_hz
        elapsed = self.clock() - self._base
        if elapsed < -_EPS:
            return
        total = int(math.floor(elapsed * rate + _EPS)) + 1
        new = total - self._k
        if new <= 0:
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

    def _push(self, k0, n):
        rate = self.rate_hz
        xs, ys, zs = self.signal(self._base + k0 / rate, n, rate)
        enc = self._encoder()
        q = self._q
        for i in range(n):
            q.append((enc(xs[i], 0), enc(ys[i], 1), enc(zs[i], 2)))

    def _encoder(self):
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
        ofs = [self._signed8(self.regs[REG_OFSX + i]) * 0.0156 for i in range(3)]

        def enc(g, axis):
            c = int(round((g + ofs[axis]) * lsb_per_g))
            c = hi if c > hi else lo if c < lo else c
            if drop_lsb:
                c &= ~1
            return (c << shift) & 0xFFFF
        return enc

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
        self._update()
        sample = self._q[0] if self._q else self._last
        data = bytes((sample[0] & 0xFF, sample[0] >> 8, sample[1] & 0xFF, sample[1] >> 8,
                      sample[2] & 0xFF, sample[2] >> 8))
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
