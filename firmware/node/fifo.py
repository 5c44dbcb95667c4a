"""What the FIFO-streaming accelerometer drivers share: register access and the window loop.

Per-sample polling over I2C cannot keep up with kHz output rates in MicroPython, so each chip
streams into its FIFO and the driver drains it in bursts, sleeping between polls for about the
time the FIFO needs to refill. A chip driver supplies `_restart_fifo()`, `_available()` (samples
waiting) and `_drain(buf, j, count)` (decode up to `count` samples into buf from index j; return how
many it took, adding to `self.overruns` when the chip lost data). Nothing is allocated per sample.
"""

from micropython import const
import errno
import time

BURST = const(16)  # samples to wait for before draining


class FifoAccelerometer:
    def __init__(self, i2c, addr, odr_hz, scale_g):
        self.i2c = i2c
        self.addr = addr
        self.odr_hz = odr_hz
        self.scale_g = scale_g
        self.overruns = 0
        self._b1 = bytearray(1)

    def _read(self, reg):
        self.i2c.readfrom_mem_into(self.addr, reg, self._b1)
        return self._b1[0]

    def _write(self, reg, val):
        self._b1[0] = val
        self.i2c.writeto_mem(self.addr, reg, self._b1)

    def read_window(self, buf, n):
        """Fill buf[0:3n] with x, y, z counts of n consecutive samples; return overruns seen.

        Raises OSError(ETIMEDOUT) when the samples stop coming (about twice the window's time).
        """
        if len(buf) < 3 * n:
            raise ValueError("buffer too small")
        odr = self.odr_hz
        limit_ms = 2 * n * 1000 // odr + 200
        start = time.ticks_ms()
        overruns = self.overruns
        got = 0
        self._restart_fifo()
        while got < n:
            want = n - got
            if want > BURST:
                want = BURST
            ready = self._available()
            if ready < want:
                if time.ticks_diff(time.ticks_ms(), start) > limit_ms:
                    raise OSError(errno.ETIMEDOUT)
                ms = (want - ready) * 1000 // odr
                time.sleep_ms(ms if ms > 0 else 1)
                continue
            got += self._drain(buf, 3 * got, ready if ready < n - got else n - got)
        return self.overruns - overruns
