"""MPU-6050 IMU, modelled at register level for the I2C bus (accelerometer, temperature, FIFO).

Like the ADXL345 model, samples are made lazily from elapsed board-clock time: at each bus access
the model adds the samples of every sample-rate period that has passed, writing them to the sensor
registers and, when enabled, to the 1024-byte FIFO (oldest bytes are dropped on overflow and
INT_STATUS.FIFO_OFLOW is set, as on the chip, which also means frames lose their alignment).

Register facts follow the InvenSense register map (RM-MPU-6000A rev 4.2): WHO_AM_I 0x68,
PWR_MGMT_1 reset 0x40 (asleep, no samples), sample rate = gyro rate / (1 + SMPLRT_DIV) with the
gyro rate 8 kHz when DLPF_CFG is 0 or 7 and 1 kHz otherwise, accelerometer output at 1 kHz (faster
sample rates repeat accelerometer values), AFS_SEL 16384/8192/4096/2048 LSB/g, big-endian data,
T = raw/340 + 36.53, FIFO written in register order. The gyroscope reads 0 (the sensor is bolted
to a housing that does not turn); the DLPF filtering itself, self-test, the DMP, motion interrupts
and the auxiliary I2C master are not modelled.
"""

import math
import time

from .i2cbus import I2CDevice

WHO_AM_I_VALUE = 0x68

REG_SMPLRT_DIV = 0x19
REG_CONFIG = 0x1A
REG_ACCEL_CONFIG = 0x1C
REG_FIFO_EN = 0x23
REG_INT_STATUS = 0x3A
REG_ACCEL_XOUT_H = 0x3B
REG_GYRO_ZOUT_L = 0x48
REG_USER_CTRL = 0x6A
REG_PWR_MGMT_1 = 0x6B
REG_FIFO_COUNTH = 0x72
REG_FIFO_COUNTL = 0x73
REG_FIFO_R_W = 0x74
REG_WHO_AM_I = 0x75

DEVICE_RESET = 0x80
SLEEP = 0x40
USER_FIFO_EN = 0x40
USER_FIFO_RESET = 0x04
USER_SELF_CLEARING = 0x07       # FIFO_RESET, I2C_MST_RESET, SIG_COND_RESET

FIFO_TEMP = 0x80
FIFO_XG = 0x40
FIFO_YG = 0x20
FIFO_ZG = 0x10
FIFO_ACCEL = 0x08

INT_FIFO_OFLOW = 0x10
INT_DATA_RDY = 0x01

FIFO_SIZE = 1024
ACCEL_RATE_HZ = 1000.0
_READ_ONLY = (set(range(REG_INT_STATUS, REG_GYRO_ZOUT_L + 1))
              | {REG_FIFO_COUNTH, REG_FIFO_COUNTL, REG_WHO_AM_I})
_EPS = 1e-9


def _still(t0, n, rate):
    return [0.0] * n, [0.0] * n, [1.0] * n


def _s16(v):
    v = int(round(v))
    v = 32767 if v > 32767 else -32768 if v < -32768 else v
    return v & 0xFFFF


class MPU6050(I2CDevice):
    def __init__(self, addr=0x68, clock=None, signal=None, temperature=None):
        super().__init__(addr)
        self.clock = clock or time.monotonic
        self.signal = signal or _still
        self.temperature = temperature     # callable(t) -> degC; None: a steady 35 C
        self.samples_made = 0
        self.power_on()

    def power_on(self):
        self.regs = bytearray(0x80)
        self.regs[REG_PWR_MGMT_1] = SLEEP
        self.regs[REG_WHO_AM_I] = WHO_AM_I_VALUE
        self._fifo = bytearray()
        self._fifo_last = 0
        self._int_status = 0
        self._out = bytes(14)               # ACCEL_XOUT_H .. GYRO_ZOUT_L
        self._running = False
        self._base = 0.0
        self._k = 0

    # ----- timing -----
    @property
    def sample_rate_hz(self):
        dlpf = self.regs[REG_CONFIG] & 0x07
        gyro = 8000.0 if dlpf in (0, 7) else 1000.0
        return gyro / (1 + self.regs[REG_SMPLRT_DIV])

    @property
    def lsb_per_g(self):
        return 16384.0 / (1 << ((self.regs[REG_ACCEL_CONFIG] >> 3) & 0x03))

    def _awake(self):
        return not self.regs[REG_PWR_MGMT_1] & SLEEP

    def _start(self):
        self._running = True
        self._base = self.clock() + 1.0 / self.sample_rate_hz
        self._k = 0

    def _frame_layout(self):
        """Register offsets (from ACCEL_XOUT_H) written to the FIFO per sample, in register order."""
        en = self.regs[REG_FIFO_EN]
        parts = []
        if en & FIFO_ACCEL:
            parts.extend(range(0, 6))
        if en & FIFO_TEMP:
            parts.extend(range(6, 8))
        for bit, off in ((FIFO_XG, 8), (FIFO_YG, 10), (FIFO_ZG, 12)):
            if en & bit:
                parts.extend((off, off + 1))
        return parts

    def _update(self):
        if not self._running:
            return
        fs = self.sample_rate_hz
        elapsed = self.clock() - self._base
        if elapsed < -_EPS:
            return
        total = int(math.floor(elapsed * fs + _EPS)) + 1
        new = total - self._k
        if new <= 0:
            return
        self.samples_made += new
        layout = self._frame_layout() if self.regs[REG_USER_CTRL] & USER_FIFO_EN else []
        # Only the newest samples can still be visible: the registers show the last one, the FIFO
        # holds at most FIFO_SIZE bytes.
        keep = 1
        if layout:
            keep = FIFO_SIZE // len(layout) + 2
            if new * len(layout) > FIFO_SIZE - len(self._fifo):
                self._int_status |= INT_FIFO_OFLOW
        m = min(new, keep)
        frames = self._make(total - m, m)
        if layout:
            fifo = self._fifo
            for fr in frames:
                fifo.extend(fr[j] for j in layout)
            if len(fifo) > FIFO_SIZE:
                del fifo[:len(fifo) - FIFO_SIZE]
        self._out = frames[-1]
        self._int_status |= INT_DATA_RDY
        self._k = total

    def _make(self, k0, n):
        """Register images (14 bytes) for samples k0 .. k0+n-1."""
        fs = self.sample_rate_hz
        if fs <= ACCEL_RATE_HZ:
            xs, ys, zs = self.signal(self._base + k0 / fs, n, fs)
            idx = range(n)
        else:
            # Faster than the 1 kHz accelerometer: samples repeat the latest accelerometer value.
            a = [int(math.floor((k0 + i) * ACCEL_RATE_HZ / fs + _EPS)) for i in range(n)]
            t_acc = self._base + k0 / fs
            xs, ys, zs = self.signal(t_acc, a[-1] - a[0] + 1, ACCEL_RATE_HZ)
            idx = [v - a[0] for v in a]
        scale = self.lsb_per_g
        t_end = self._base + (k0 + n - 1) / fs
        temp_c = self.temperature(t_end) if self.temperature else 35.0
        traw = _s16((temp_c - 36.53) * 340.0)
        tail = bytes((traw >> 8, traw & 0xFF)) + bytes(6)
        frames = []
        for j in idx:
            x, y, z = _s16(xs[j] * scale), _s16(ys[j] * scale), _s16(zs[j] * scale)
            frames.append(bytes((x >> 8, x & 0xFF, y >> 8, y & 0xFF, z >> 8, z & 0xFF)) + tail)
        return frames

    # ----- bus interface -----
    def next_reg(self, reg, n):
        # FIFO_R_W does not auto-increment: burst reads keep draining the FIFO.
        if reg <= REG_FIFO_R_W < reg + n:
            return REG_FIFO_R_W
        return (reg + n) & 0xFF

    def _read_reg(self, r):
        if REG_ACCEL_XOUT_H <= r <= REG_GYRO_ZOUT_L:
            return self._out[r - REG_ACCEL_XOUT_H]
        if r == REG_INT_STATUS:
            v = self._int_status
            self._int_status = 0        # INT_RD_CLEAR = 0: cleared by reading INT_STATUS
            return v
        if r == REG_FIFO_COUNTH:
            return len(self._fifo) >> 8
        if r == REG_FIFO_COUNTL:
            return len(self._fifo) & 0xFF
        if r == REG_FIFO_R_W:
            if self._fifo:
                self._fifo_last = self._fifo.pop(0)
            return self._fifo_last      # empty FIFO: the last byte read repeats
        if r < len(self.regs):
            return self.regs[r]
        return 0

    def read(self, reg, n):
        self._update()
        out = bytearray(n)
        r = reg & 0xFF
        for i in range(n):
            if r == REG_FIFO_R_W and n - i > 1 and len(self._fifo) >= n - i:
                # Fast path for burst FIFO reads.
                cnt = n - i
                out[i:] = self._fifo[:cnt]
                self._fifo_last = self._fifo[cnt - 1]
                del self._fifo[:cnt]
                break
            out[i] = self._read_reg(r)
            if r != REG_FIFO_R_W:
                r = (r + 1) & 0xFF
        return bytes(out)

    def write(self, reg, data):
        self._update()
        r = reg & 0xFF
        for v in data:
            self._write_reg(r, v)
            if r != REG_FIFO_R_W:
                r = (r + 1) & 0xFF

    def _write_reg(self, r, v):
        if r == REG_FIFO_R_W:
            self._fifo.append(v)
            if len(self._fifo) > FIFO_SIZE:
                del self._fifo[0]
                self._int_status |= INT_FIFO_OFLOW
            return
        if r >= len(self.regs) or r in _READ_ONLY:
            return
        if r == REG_PWR_MGMT_1:
            if v & DEVICE_RESET:
                self.power_on()
                return
            was = self._awake()
            self.regs[r] = v
            if self._awake() and not was:
                self._start()
            elif was and not self._awake():
                self._running = False
            return
        if r == REG_USER_CTRL:
            if v & USER_FIFO_RESET:
                self._fifo = bytearray()
            self.regs[r] = v & ~USER_SELF_CLEARING & 0xFF
            return
        old = self.regs[r]
        self.regs[r] = v
        if r in (REG_SMPLRT_DIV, REG_CONFIG) and old != v and self._running:
            self._start()
